"""Apache/Nginx access-log lines (common and combined formats) into their fields."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from functools import lru_cache

# host ident user [time] "request" status size ["referrer" "agent"]; quoted fields may hold
# escaped quotes (nginx writes \x22 or \"), so they are matched as escape-aware strings.
_COMBINED = re.compile(
    r'^(?P<ip>\S+) \S+ \S+ \[(?P<time>[^\]]+)\] "(?P<request>(?:[^"\\]|\\.)*)" '
    r"(?P<status>\d{3}) (?P<size>\S+)"
    r'(?: "(?P<referrer>(?:[^"\\]|\\.)*)" "(?P<agent>(?:[^"\\]|\\.)*)")?\s*$'
)
_CLF_TIME = re.compile(
    r"^(\d{2})/([A-Za-z]{3})/(\d{4}):(\d{2}):(\d{2}):(\d{2})(?: ([+-])(\d{2})(\d{2}))?$"
)
_MONTHS = {
    m: i
    for i, m in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1
    )
}
_ZONES: dict[str, timezone] = {}


@dataclass(frozen=True, slots=True)
class AccessLog:
    """One request as the web server logged it; `raw` is the line itself (for the event id)."""

    ip: str
    timestamp: datetime
    method: str
    path: str
    status: int
    referrer: str | None
    agent: str
    raw: str


@lru_cache(maxsize=4096)  # busy servers log many requests per second: same string, same time
def parse_clf_time(text: str) -> datetime | None:
    """'10/Oct/2000:13:55:36 -0700' as an aware UTC datetime, or None when malformed."""
    m = _CLF_TIME.match(text.strip())
    if m is None:
        return None
    month = _MONTHS.get(m[2].lower())
    if month is None:
        return None
    offset = "+0000" if m[7] is None else m[7] + m[8] + m[9]
    zone = _ZONES.get(offset)
    if zone is None:
        minutes = int(offset[1:3]) * 60 + int(offset[3:5])
        if minutes >= 24 * 60:  # datetime.timezone refuses it: not a real UTC offset
            return None
        zone = timezone(timedelta(minutes=-minutes if offset[0] == "-" else minutes))
        _ZONES[offset] = zone
    try:
        local = datetime(int(m[3]), month, int(m[1]), int(m[4]), int(m[5]), int(m[6]), tzinfo=zone)
        return local.astimezone(UTC)
    except (ValueError, OverflowError):  # 31/Feb, or a year-1/year-9999 time past UTC's range
        return None


def split_request(request: str) -> tuple[str, str] | None:
    """'GET /items/1 HTTP/1.1' -> ('GET', '/items/1'); None for a garbled request line."""
    parts = request.split(" ")
    if len(parts) < 2 or not parts[0].isalpha() or not parts[1]:
        return None
    return parts[0].upper(), parts[1]


def _blank(value: str | None) -> str | None:
    return None if value is None or value in ("", "-") else value


def parse_access_log(line: str) -> AccessLog | None:
    """A combined- or common-format line, or None when the line is neither."""
    m = _COMBINED.match(line)
    if m is None:
        return None
    timestamp = parse_clf_time(m["time"])
    request = split_request(m["request"])
    if timestamp is None or request is None:
        return None
    return AccessLog(
        ip=m["ip"],
        timestamp=timestamp,
        method=request[0],
        path=request[1],
        status=int(m["status"]),
        referrer=_blank(m["referrer"]),
        agent=_blank(m["agent"]) or "",
        raw=line,
    )
