"""Business rules: which requests are content views, who made them, what they are about.

URL path -> item id by ordered regex rules, static assets / non-2xx / bots filtered with a
reason, anonymous visitor ids as a keyed hash of IP + user agent (the raw IP is never kept).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import UTC, datetime
from typing import Any

import orjson

from recloop.config import Settings
from recloop.events import strip_query
from recloop.ingest.accesslog import AccessLog, parse_access_log, parse_clf_time, split_request
from recloop.ingest.decode import Rejected, Skipped

_MAX_PAGE = 2048
_VISITOR_CACHE_SIZE = 65_536


def event_id_for_line(line: str) -> str:
    """The deterministic id of an access-log line: the same line always gets the same id."""
    return hashlib.sha256(line.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _device(agent: str) -> str:
    if "iPad" in agent or "Tablet" in agent:
        return "tablet"
    if "Mobi" in agent or "Android" in agent:
        return "mobile"
    return "desktop"


def _unquote(value: Any) -> str | None:
    # grok's COMBINEDAPACHELOG keeps the quotes around referrer and agent
    if not isinstance(value, str):
        return None
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    return None if value in ("", "-") else value


def _iso_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return parse_clf_time(value)
    try:
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except OverflowError:  # 9999-12-31T23:59:59-01:00 is past datetime.max in UTC
        return None


def _dig(obj: dict[str, Any], *path: str) -> Any:
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)  # type: ignore[assignment]
    return obj


class Rules:
    """The configured business rules, compiled once per Ingestor."""

    def __init__(self, settings: Settings) -> None:
        self.url_rules = [re.compile(rule) for rule in settings.url_rules]
        self.asset_suffixes = tuple(s.lower() for s in settings.asset_suffixes)
        patterns = "|".join(re.escape(p) for p in settings.bot_patterns)
        self.bot = re.compile(patterns, re.IGNORECASE) if patterns else None
        self._key = settings.visitor_key.get_secret_value().encode()
        self._visitors: dict[tuple[str, str], str] = {}

    def visitor_id(self, ip: str, agent: str) -> str:
        """A keyed hash of IP and user agent: stable per visitor, the IP is not recoverable."""
        cached = self._visitors.get((ip, agent))
        if cached is None:
            message = f"{ip}\0{agent}".encode("utf-8", "surrogatepass")
            cached = "v-" + hmac.new(self._key, message, hashlib.sha256).hexdigest()[:30]
            if len(self._visitors) >= _VISITOR_CACHE_SIZE:
                self._visitors.clear()
            self._visitors[(ip, agent)] = cached
        return cached

    def is_bot(self, agent: str | None) -> bool:
        if not agent:
            return True  # real browsers always send a user agent; scripts often do not
        return self.bot is not None and self.bot.search(agent) is not None

    def item_for(self, path: str) -> str | None:
        """The item id of the first rule that matches the path (query and fragment ignored)."""
        path = path.split("?", 1)[0].split("#", 1)[0]
        for rule in self.url_rules:
            m = rule.match(path)
            if m is not None:
                return m["item"]
        return None

    def view_from_log(self, log: AccessLog) -> dict[str, Any] | Skipped:
        """A view event dict for a content page request, or why the request is not one."""
        bare = log.path.split("?", 1)[0].lower()
        if bare.endswith(self.asset_suffixes):
            return Skipped("static_asset")
        if not 200 <= log.status < 300:
            return Skipped("non_2xx")
        if self.is_bot(log.agent):
            return Skipped("bot")
        if log.method != "GET":
            return Skipped("not_get")
        item = self.item_for(log.path)
        if item is None:
            return Skipped("not_content")
        return {
            "event_id": event_id_for_line(log.raw),
            "event_type": "view",
            "timestamp": log.timestamp,
            "visitor_id": self.visitor_id(log.ip, log.agent),
            "item_id": item,
            "context": {
                "page": (strip_query(log.path) or "")[:_MAX_PAGE],
                "referrer": (strip_query(log.referrer) or "")[:_MAX_PAGE] or None,
                "device": _device(log.agent),
            },
            "source": "weblog",
        }

    def log_from_logstash(self, obj: dict[str, Any], text: str) -> AccessLog | Rejected:
        """The request a Logstash event describes: its message line, else its grok fields."""
        message = obj.get("message")
        if isinstance(message, str):
            log = parse_access_log(message.strip())
            if log is not None:
                return log
        grok = self._from_grok(obj)
        if grok is not None:
            return grok
        return Rejected(
            "unparsable_log", "message is not an access-log line and no grok fields", text.encode()
        )

    def _from_grok(self, obj: dict[str, Any]) -> AccessLog | None:
        """Grok's COMBINEDAPACHELOG fields, legacy names or ECS (Logstash 8's default)."""
        ip = obj.get("clientip", _dig(obj, "source", "address"))
        request = obj.get("request", _dig(obj, "url", "original"))
        response = obj.get("response", _dig(obj, "http", "response", "status_code"))
        if not isinstance(ip, str) or not isinstance(request, str) or response is None:
            return None
        try:
            status = int(response)
        except (TypeError, ValueError):
            return None
        method = obj.get("verb", _dig(obj, "http", "request", "method"))
        path = request
        if " " in request:  # some patterns capture the whole request line
            split = split_request(request)
            if split is None:
                return None
            method, path = method or split[0], split[1]
        timestamp = _iso_time(obj.get("timestamp")) or _iso_time(obj.get("@timestamp"))
        if timestamp is None:
            return None
        referrer = obj.get("referrer", _dig(obj, "http", "request", "referrer"))
        agent = obj.get("agent")
        if not isinstance(agent, str):  # ECS: user_agent.original (agent is Beats metadata)
            agent = _dig(obj, "user_agent", "original")
        return AccessLog(
            ip=ip,
            timestamp=timestamp,
            method=str(method or "GET").upper(),
            path=path,
            status=status,
            referrer=_unquote(referrer),
            agent=_unquote(agent) or "",
            # no log line to hash: the whole event, canonically, identifies the request
            raw=orjson.dumps(obj, option=orjson.OPT_SORT_KEYS, default=str).decode(),
        )

    def tracker_event(self, obj: dict[str, Any]) -> dict[str, Any] | Skipped:
        """A tracker event after the bot rule; an IP it carries becomes a visitor id."""
        agent = obj.get("user_agent", obj.get("agent"))
        if isinstance(agent, str) and self.is_bot(agent):
            return Skipped("bot")
        ip = obj.get("ip")
        if isinstance(ip, str) and obj.get("user_id") is None and obj.get("visitor_id") is None:
            ua = agent if isinstance(agent, str) else ""
            obj = {**obj, "visitor_id": self.visitor_id(ip, ua)}
        return obj
