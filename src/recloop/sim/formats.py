"""The synthetic traffic in the shapes recloop ingests: tracker JSON, Logstash events, access logs.

- tracker: one JSON object per item view or click, in recloop.events.Event's fields plus the
  browser's `user_agent` (the tracker sends it; ingest drops crawlers by it). Headless crawlers
  run the tracker too; assets, the home page and error pages never reach it.
- accesslog: every web-server hit as an Apache combined-log line; signed-in users appear in
  the remote-user field, anonymous visitors and bots as '-'.
- logstash: each access-log line as Logstash's file input + grok (COMBINEDAPACHELOG, legacy
  field names) emits it: `@timestamp`, `message`, clientip, auth, request, response, bytes,
  referrer and agent (the last two keep their quotes, as grok's QS pattern captures them).
"""

from __future__ import annotations

from collections.abc import Iterator
from enum import StrEnum
from typing import IO, Any

import numpy as np
import orjson

from recloop.sim.traffic import Kind, Traffic

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class Format(StrEnum):
    TRACKER = "tracker"
    LOGSTASH = "logstash"
    ACCESSLOG = "accesslog"


def _iso(ts_ms: np.ndarray[Any, Any]) -> list[str]:
    return [s + "Z" for s in np.datetime_as_string(ts_ms.astype("datetime64[ms]"), unit="ms")]


def _clf_time(ts_ms: np.ndarray[Any, Any]) -> list[str]:
    """Common Log Format times: 10/Oct/2024:13:55:36 +0000."""
    secs = np.datetime_as_string((ts_ms // 1000).astype("datetime64[s]"), unit="s")
    return [f"{s[8:10]}/{_MONTHS[int(s[5:7]) - 1]}/{s[:4]}:{s[11:19]} +0000" for s in secs]


def tracker_records(traffic: Traffic) -> list[dict[str, Any]]:
    """Human views and clicks as tracker events (dicts that validate as recloop Event)."""
    t = traffic.take(traffic.tracked)
    world = t.world
    n_users = world.config.n_users
    stamps = _iso(t.ts_ms)
    records = []
    for k, actor in enumerate(t.actor.tolist()):
        who = (
            {"user_id": world.user_ids[actor]}
            if actor < n_users
            else {"visitor_id": world.visitor_ids[actor - n_users]}
            if actor < world.n_humans
            else {"visitor_id": world.bot_ids[actor - world.n_humans]}
        )
        ref = t.referrer[k]
        records.append(
            {
                "event_id": t.event_id[k],
                "event_type": "click" if t.kind[k] == Kind.CLICK else "view",
                "timestamp": stamps[k],
                **who,
                "item_id": world.item_ids[t.item[k]],
                "session_id": t.session_id[k],
                "user_agent": world.actor_agent[actor],
                "context": {
                    "page": t.path[k],
                    "referrer": None if ref == "-" else ref,
                    "device": world.actor_device[actor],
                },
            }
        )
    return records


def access_log_lines(traffic: Traffic) -> list[str]:
    """Every hit as an Apache combined-log line."""
    world = traffic.world
    n_users = world.config.n_users
    times = _clf_time(traffic.ts_ms)
    lines = []
    for k, actor in enumerate(traffic.actor.tolist()):
        user = world.user_ids[actor] if actor < n_users else "-"
        lines.append(
            f'{world.actor_ip[actor]} - {user} [{times[k]}] "GET {traffic.path[k]} HTTP/1.1" '
            f'{traffic.status[k]} {traffic.nbytes[k]} "{traffic.referrer[k]}" '
            f'"{world.actor_agent[actor]}"'
        )
    return lines


def logstash_records(traffic: Traffic) -> list[dict[str, Any]]:
    """Every hit as the event Logstash's grok COMBINEDAPACHELOG filter produces."""
    world = traffic.world
    n_users = world.config.n_users
    stamps = _iso(traffic.ts_ms)
    times = _clf_time(traffic.ts_ms)
    lines = access_log_lines(traffic)
    records = []
    for k, actor in enumerate(traffic.actor.tolist()):
        records.append(
            {
                "@timestamp": stamps[k],
                "@version": "1",
                "host": "web-1",
                "message": lines[k],
                "clientip": world.actor_ip[actor],
                "ident": "-",
                "auth": world.user_ids[actor] if actor < n_users else "-",
                "timestamp": times[k],
                "verb": "GET",
                "request": traffic.path[k],
                "httpversion": "1.1",
                "response": str(traffic.status[k]),
                "bytes": str(traffic.nbytes[k]),
                "referrer": f'"{traffic.referrer[k]}"',
                "agent": f'"{world.actor_agent[actor]}"',
            }
        )
    return records


def iter_lines(traffic: Traffic, fmt: Format | str) -> Iterator[str]:
    """The traffic as text lines (no newline) in one of the formats."""
    fmt = Format(fmt)
    if fmt is Format.ACCESSLOG:
        yield from access_log_lines(traffic)
        return
    records = tracker_records(traffic) if fmt is Format.TRACKER else logstash_records(traffic)
    for record in records:
        yield orjson.dumps(record).decode()


def write_traffic(traffic: Traffic, fmt: Format | str, handle: IO[str]) -> int:
    """Write the traffic to a text handle, one line per record; returns the line count."""
    count = 0
    chunk: list[str] = []
    for line in iter_lines(traffic, fmt):
        chunk.append(line)
        if len(chunk) >= 10_000:
            handle.write("\n".join(chunk) + "\n")
            count += len(chunk)
            chunk = []
    if chunk:
        handle.write("\n".join(chunk) + "\n")
        count += len(chunk)
    return count
