"""The CandidateSource contract: a broad first selection that limits the model's work."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from recloop.serving.model import ServedModel


class Origin(IntEnum):
    """Why an item became a candidate; ranking turns it into the item's reason."""

    NEIGHBOUR = 1  # similar to an item in the actor's history
    VECTOR = 2  # close to the actor's vector (kNN / ANN / category scan)
    POPULAR = 3  # popular in the model's training window
    EXCLUDED = 4  # internal to merge: items the query excludes


@dataclass(frozen=True)
class CandidateQuery:
    """What one request asks the source for."""

    user_vector: np.ndarray | None  # None for a cold-start actor
    history: np.ndarray  # the actor's item indices, newest first
    n: int = 300
    category: str | None = None
    exclude: frozenset[int] = field(default_factory=frozenset)


@dataclass(frozen=True)
class Candidates:
    """Item indices with their origin and, for neighbours, the history item that led there."""

    items: np.ndarray  # int64 item indices, unique
    origin: np.ndarray  # int8 Origin per item
    anchor: np.ndarray  # int64 history item index per item, -1 when none

    def __len__(self) -> int:
        return len(self.items)


@runtime_checkable
class CandidateSource(Protocol):
    """Retrieval for one model version (contract suite: tests/functional/test_candidates)."""

    name: str
    blocking_io: bool  # True: network calls, run in a thread under a deadline

    def publish(self, model: ServedModel) -> None:
        """Make the model version's candidates servable (idempotent); called before the swap."""
        ...

    def candidates(self, model: ServedModel, query: CandidateQuery) -> Candidates:
        """Up to query.n candidates that pass the query's filters."""
        ...

    def similar(self, model: ServedModel, item: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The n items most similar to `item` (indices, similarities), best first."""
        ...

    def ping(self) -> None:
        """Raise when the source cannot answer."""
        ...


def merge(
    parts: Sequence[tuple[np.ndarray, Origin, np.ndarray | None]],
    limit: int,
    exclude: frozenset[int] = frozenset(),
) -> Candidates:
    """Concatenate candidate parts in priority order, keep each item's first occurrence.

    Excluded items go in first, so one np.unique pass both deduplicates and drops them.
    """
    if exclude:
        banned = np.fromiter(exclude, dtype=np.int64, count=len(exclude))
        parts = [(banned, Origin.EXCLUDED, None), *parts]
    if not parts:
        empty = np.empty(0, np.int64)
        return Candidates(empty, np.empty(0, np.int8), empty)
    items = np.concatenate([np.asarray(p[0], dtype=np.int64).reshape(-1) for p in parts])
    origin = np.concatenate(
        [np.full(np.asarray(p[0]).size, int(p[1]), dtype=np.int8) for p in parts]
    )
    anchor = np.concatenate(
        [
            np.full(np.asarray(p[0]).size, -1, dtype=np.int64)
            if p[2] is None
            else np.asarray(p[2], dtype=np.int64).reshape(-1)
            for p in parts
        ]
    )
    _, first = np.unique(items, return_index=True)
    first.sort()
    keep = first[(items[first] >= 0) & (origin[first] != Origin.EXCLUDED)][:limit]
    return Candidates(items[keep], origin[keep], anchor[keep])
