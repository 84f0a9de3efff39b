"""A lease with an expiry on an object store: only conditional creates, on file:// and s3://.

    lease = Lease(store, "retrain")
    token = lease.acquire("job-abc", ttl=timedelta(hours=7), now=now)   # None: someone holds it
    ...
    lease.release(token)

Each holder is one generation, `<name>/<generation>.json`, created with put_if_absent (S3's
If-None-Match: *, a hard link on a local disk). The lease is held when the newest generation has
no `<generation>.released` marker and has not expired. To take it, a contender creates the next
generation; when two try at once exactly one create succeeds. No object is ever replaced, so a
store that only offers create-if-absent is enough, and the history of who held it stays.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from recloop.lake.store import ObjectStore
from recloop.loop.errors import LoopError


@dataclass(frozen=True)
class LeaseToken:
    """One generation of a lease: who holds it, until when, and why."""

    name: str
    generation: int
    holder: str
    acquired_at: datetime
    expires_at: datetime
    detail: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "lease": self.name,
            "generation": self.generation,
            "holder": self.holder,
            "acquired_at": self.acquired_at.isoformat(),
            "expires_at": self.expires_at.isoformat(),
            **({"detail": self.detail} if self.detail else {}),
        }


class Lease:
    """A named lease in `store` (see the module docstring)."""

    def __init__(self, store: ObjectStore, name: str) -> None:
        if not re.fullmatch(r"[A-Za-z0-9._-]+", name):
            raise LoopError(f"lease name {name!r}: letters, digits, '.', '_' and '-' only")
        self.store = store
        self.name = name

    def _key(self, generation: int, suffix: str = "json") -> str:
        return f"leases/{self.name}/{generation:010d}.{suffix}"

    def _newest(self) -> tuple[int, bool]:
        """(newest generation or 0, whether it was released)."""
        generations: set[int] = set()
        released: set[int] = set()
        for info in self.store.list(f"leases/{self.name}/"):
            tail = info.key.rsplit("/", 1)[-1]
            number, _, suffix = tail.partition(".")
            if number.isdigit() and suffix == "json":
                generations.add(int(number))
            elif number.isdigit() and suffix == "released":
                released.add(int(number))
        newest = max(generations, default=0)
        return newest, newest in released

    def _read(self, generation: int) -> LeaseToken:
        data = orjson.loads(self.store.get(self._key(generation)))
        return LeaseToken(
            self.name,
            generation,
            str(data["holder"]),
            datetime.fromisoformat(data["acquired_at"]),
            datetime.fromisoformat(data["expires_at"]),
            dict(data.get("detail") or {}),
        )

    def holder(self, now: datetime) -> LeaseToken | None:
        """The live holder at `now`, or None when the lease is free."""
        newest, released = self._newest()
        if newest == 0 or released:
            return None
        token = self._read(newest)
        return token if now < token.expires_at else None

    def acquire(
        self,
        holder: str,
        ttl: timedelta,
        now: datetime | None = None,
        detail: dict[str, Any] | None = None,
    ) -> LeaseToken | None:
        """Take the lease for `ttl`; None when someone else holds it or won the race."""
        now = (now or datetime.now(UTC)).astimezone(UTC)
        newest, released = self._newest()
        if newest and not released and now < self._read(newest).expires_at:
            return None
        token = LeaseToken(self.name, newest + 1, holder, now, now + ttl, dict(detail or {}))
        data = orjson.dumps({k: v for k, v in token.to_dict().items() if k != "lease"})
        return token if self.store.put_if_absent(self._key(token.generation), data) else None

    def release(self, token: LeaseToken) -> bool:
        """Give the lease back; False when it was already released (a second release)."""
        return self.store.put_if_absent(self._key(token.generation, "released"), b"")

    def find(self, holder: str) -> LeaseToken | None:
        """The newest generation `holder` took (released or not), or None."""
        newest, _ = self._newest()
        # The recent generations only: a holder looks for its own lease soon after taking it.
        for generation in range(newest, max(0, newest - 50), -1):
            token = self._read(generation)
            if token.holder == holder:
                return token
        return None
