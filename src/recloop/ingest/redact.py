"""What may be kept of raw input: no client IP, no URL query string, a bounded prefix.

Quarantined units keep a payload so an operator can see why they were rejected, but raw weblogs
carry personal data: the client's IP address, and query strings that hold search terms, emails
or tokens. Every payload is redacted here before it is written, and cut to a prefix, so that a
200 MiB line costs a bounded quarantine row too.
"""

from __future__ import annotations

import re

# The prefix of a payload that is kept: enough to see what the input looked like.
MAX_PAYLOAD_BYTES = 4096
IP_MARK = b"<ip>"
QUERY_MARK = b"?<query>"

# IPv4 dotted quads, and IPv6 written with at least two colons and hex groups (":: 1" forms
# included); times such as 13:55:36 are not addresses (groups of decimal digits < 3 colons).
_IPV4 = rb"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w.])"
_IPV6 = rb"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?:%\w+)?(?![\w:])"
_IP = re.compile(_IPV4 + b"|" + _IPV6)
# A query string runs from '?' to the next space, quote, backslash escape or end.
_QUERY = re.compile(rb"\?[^\s\"'\\<>]*")
_HEX_LETTER = re.compile(rb"[A-Fa-f]")
_TRAILING_TOKEN = re.compile(rb"[0-9A-Fa-f.:%]{1,46}$")  # an address is at most 46 chars
# redaction runs on a little more than the prefix kept, since masks can be shorter than matches
_SLACK = 256


def _is_ipv6_like(text: bytes) -> bool:
    # A CLF time (2000:13:55:36) is decimal groups only; an address has an empty group (::),
    # a hex letter, or six or more groups.
    groups = text.split(b"%", 1)[0].split(b":")
    if b"" in groups[1:-1] or len(groups) >= 6:
        return True
    return any(_HEX_LETTER.search(g) for g in groups)


def _ip_mark(match: re.Match[bytes]) -> bytes:
    text = match.group(0)
    if b"." not in text and not _is_ipv6_like(text):
        return text
    return IP_MARK


def redact(payload: bytes, limit: int = MAX_PAYLOAD_BYTES) -> bytes:
    """The payload's first `limit` bytes with IP addresses and query strings masked."""
    head = payload[: limit + _SLACK]
    if len(payload) > len(head):
        # the cut may split an address: drop the partial token rather than keep part of it
        head = _TRAILING_TOKEN.sub(b"", head)
    head = _QUERY.sub(QUERY_MARK, head)
    return _IP.sub(_ip_mark, head)[:limit]
