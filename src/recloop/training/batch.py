"""Batch inference: top-K recommendations for a list of users, as for an e-mail campaign.

Each user's history is their training row in the bundle; their training items are excluded by
default (recommending what they already consumed wastes a slot). A user the bundle does not know
gets the bundle's popularity list.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from pathlib import Path

from recloop.errors import RecloopError
from recloop.training.bundle import ModelBundle

CSV_COLUMNS = ("user_id", "item_id", "rank", "score")


class BatchError(RecloopError):
    """A batch-inference input is missing or malformed."""


def read_user_ids(path: Path) -> list[str]:
    """User ids from a file: one per line, or a CSV whose header has a `user_id` column."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise BatchError(f"cannot read users from {path}: {exc}") from exc
    rows = [line.strip() for line in lines if line.strip()]
    if rows and "," in rows[0]:
        header = [cell.strip() for cell in rows[0].split(",")]
        if "user_id" not in header:
            raise BatchError(f"{path}: a CSV users file needs a 'user_id' column, has {header}")
        column = header.index("user_id")
        rows = [next(csv.reader([row]))[column].strip() for row in rows[1:]]
    elif rows and rows[0] == "user_id":
        rows = rows[1:]
    users = list(dict.fromkeys(user for user in rows if user))  # unique, in file order
    if not users:
        raise BatchError(f"{path} lists no user ids")
    return users


def recommend_batch(
    bundle: ModelBundle,
    user_ids: Iterable[str],
    k: int = 10,
    exclude_seen: bool = True,
    batch_size: int = 1024,
) -> Iterator[tuple[str, str, int, float]]:
    """(user_id, item_id, rank, score) rows, rank from 1, users in the given order."""
    if k < 1:
        raise BatchError(f"k must be >= 1, got {k}")
    users = list(user_ids)
    for lo in range(0, len(users), batch_size):
        chunk = users[lo : lo + batch_size]
        histories = bundle.training_history(chunk)
        for user, recs in zip(chunk, bundle.recommend(histories, k, exclude_seen), strict=True):
            for rank, (item, score) in enumerate(recs, start=1):
                yield user, item, rank, score


def write_csv(rows: Iterable[tuple[str, str, int, float]], out: Path) -> int:
    """Write rows with a header to `out` (through a temporary file); returns the row count."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    count = 0
    with tmp.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        for user, item, rank, score in rows:
            writer.writerow((user, item, rank, f"{score:.6g}"))
            count += 1
    tmp.replace(out)
    return count
