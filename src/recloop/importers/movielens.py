"""`recloop import movielens DIR`: MovieLens 100K or 1M, as GroupLens ships them.

ML-100K: u.data (user item rating epoch, tab-separated), u.item (pipe-separated, latin-1:
id|title|release date|video release date|IMDb URL|19 genre flags), u.user (id|age|gender|
occupation|zip). ML-1M: ratings.dat, movies.dat (id::title::Genre|Genre), users.dat
(id::gender::age group::occupation code::zip), '::'-separated, latin-1.

The mapping (docs/data.md): every rating is a view at the rating's time; a rating at or above
`click_threshold` (default 4) is also a click at the same time. Event ids derive from dataset,
user, item and type, so a re-import writes nothing twice.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from recloop.config import Settings
from recloop.errors import ImportDataError
from recloop.importers._common import BATCH_SIZE, ImportResult, file_digest, write_catalog
from recloop.ingest import Ingestor, IngestReport
from recloop.lake import Lake

GENRES_100K = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)
OCCUPATIONS_1M = (
    "other",
    "academic/educator",
    "artist",
    "clerical/admin",
    "college/grad student",
    "customer service",
    "doctor/health care",
    "executive/managerial",
    "farmer",
    "homemaker",
    "K-12 student",
    "lawyer",
    "programmer",
    "retired",
    "sales/marketing",
    "scientist",
    "self-employed",
    "technician/engineer",
    "tradesman/craftsman",
    "unemployed",
    "writer",
)


@dataclass(frozen=True)
class _Variant:
    name: str  # ml-100k or ml-1m
    ratings: str
    items: str
    users: str
    sep: str


ML_100K = _Variant("ml-100k", "u.data", "u.item", "u.user", "")
ML_1M = _Variant("ml-1m", "ratings.dat", "movies.dat", "users.dat", "::")


def detect(folder: Path) -> _Variant:
    """Which MovieLens release a folder holds, or a clear error."""
    if not folder.is_dir():
        raise ImportDataError(f"{folder} is not a folder")
    for variant in (ML_100K, ML_1M):
        if (folder / variant.ratings).is_file():
            for name in (variant.items, variant.users):
                if not (folder / name).is_file():
                    raise ImportDataError(f"{folder} has {variant.ratings} but no {name}")
            return variant
    raise ImportDataError(
        f"{folder} holds neither u.data (MovieLens 100K) nor ratings.dat (MovieLens 1M)"
    )


def _table(path: Path, sep: str, names: list[str], numeric: list[str]) -> pd.DataFrame:
    """A latin-1 file with a fixed number of fields per line, or an error naming the line."""
    text = path.read_bytes().decode("latin-1")
    shown = "tab" if sep == "\t" else repr(sep)
    expected = len(names)
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            fields = line.count(sep) + 1
            if fields != expected or (sep == "::" and "\t" in line):
                raise ImportDataError(
                    f"{path.name} line {number}: expected {expected} {shown}-separated fields, "
                    f"found {fields}: {line[:80]!r}"
                )
    if sep == "::":  # the C parser takes one-character separators; no line holds a tab
        text = text.replace("::", "\t")
        sep = "\t"
    try:
        frame = pd.read_csv(
            io.StringIO(text),
            sep=sep,
            header=None,
            names=names,
            dtype=str,
            keep_default_na=False,
            quoting=csv.QUOTE_NONE,
            skip_blank_lines=True,
        )
    except (pd.errors.ParserError, ValueError) as exc:
        raise ImportDataError(f"{path.name}: {exc}") from exc
    for column in numeric:
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = values.isna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise ImportDataError(
                f"{path.name} row {row + 1}: {column} {frame[column].iloc[row]!r} is not a number"
            )
        frame[column] = values.astype(np.int64)
    return frame


def _ratings(folder: Path, variant: _Variant) -> pd.DataFrame:
    sep = "\t" if variant is ML_100K else "::"
    frame = _table(
        folder / variant.ratings,
        sep,
        ["user", "item", "rating", "ts"],
        ["user", "item", "rating", "ts"],
    )
    out_of_range = ~frame["rating"].between(1, 5)
    if out_of_range.any():
        row = int(np.flatnonzero(out_of_range.to_numpy())[0])
        raise ImportDataError(f"{variant.ratings} row {row + 1}: rating outside 1..5")
    # epoch seconds up to 1e10 (the year 2286): beyond, pandas' datetimes overflow (a traceback)
    bad_time = ~frame["ts"].between(0, 10**10)
    if bad_time.any():
        row = int(np.flatnonzero(bad_time.to_numpy())[0])
        raise ImportDataError(
            f"{variant.ratings} row {row + 1}: timestamp {frame['ts'].iloc[row]} is not epoch "
            "seconds between 1970 and 2286"
        )
    return frame.sort_values(["ts", "user", "item"], kind="stable").reset_index(drop=True)


def _release(text: str) -> datetime | None:
    try:
        return datetime.strptime(text.strip(), "%d-%b-%Y").replace(tzinfo=UTC)
    except ValueError:
        return None


def _year_of(title: str) -> datetime | None:
    # ML-1M has no release date; the title ends with the year: "Toy Story (1995)"
    title = title.strip()
    if len(title) >= 6 and title[-1] == ")" and title[-6] == "(" and title[-5:-1].isdigit():
        return datetime(int(title[-5:-1]), 1, 1, tzinfo=UTC)
    return None


def items_table(folder: Path, variant: _Variant) -> pa.Table:
    """Content metadata: item_id, title, category, categories (genres), publish_time, year."""
    if variant is ML_100K:
        genre_names = list(GENRES_100K)
        genre_file = folder / "u.genre"
        if genre_file.is_file():
            listed = [
                line.split("|")[0]
                for line in genre_file.read_bytes().decode("latin-1").splitlines()
                if "|" in line
            ]
            genre_names = listed if len(listed) == len(GENRES_100K) else genre_names
        names = ["item", "title", "release", "video_release", "imdb_url", *genre_names]
        frame = _table(folder / variant.items, "|", names, ["item", *genre_names])
        flags = frame[genre_names].to_numpy() == 1
        genres = [[genre_names[g] for g in np.flatnonzero(row)] for row in flags]
        published = [
            _release(t) or _year_of(title)
            for t, title in zip(frame["release"], frame["title"], strict=True)
        ]
        extra = {"imdb_url": pa.array([u or None for u in frame["imdb_url"]], pa.string())}
    else:
        frame = _table(folder / variant.items, "::", ["item", "title", "genres"], ["item"])
        genres = [[g for g in text.split("|") if g] for text in frame["genres"]]
        published = [_year_of(title) for title in frame["title"]]
        extra = {}
    return pa.table(
        {
            "item_id": pa.array(frame["item"].astype(str).tolist(), pa.string()),
            "title": pa.array(frame["title"].tolist(), pa.string()),
            "category": pa.array([g[0] if g else None for g in genres], pa.string()),
            "categories": pa.array(genres, pa.list_(pa.string())),
            "publish_time": pa.array(published, pa.timestamp("ms", tz="UTC")),
            **extra,
        }
    )


def users_table(folder: Path, variant: _Variant) -> pa.Table:
    """User profiles: user_id, age, gender, occupation, zip_code."""
    if variant is ML_100K:
        names = ["user", "age", "gender", "occupation", "zip_code"]
        frame = _table(folder / variant.users, "|", names, ["user", "age"])
        occupation = frame["occupation"].tolist()
    else:
        names = ["user", "gender", "age", "occupation", "zip_code"]
        frame = _table(folder / variant.users, "::", names, ["user", "age", "occupation"])
        occupation = [
            OCCUPATIONS_1M[o] if 0 <= o < len(OCCUPATIONS_1M) else str(o)
            for o in frame["occupation"].tolist()
        ]
    return pa.table(
        {
            "user_id": pa.array(frame["user"].astype(str).tolist(), pa.string()),
            "age": pa.array(frame["age"].tolist(), pa.int16()),
            "gender": pa.array(frame["gender"].tolist(), pa.string()),
            "occupation": pa.array(occupation, pa.string()),
            "zip_code": pa.array(frame["zip_code"].tolist(), pa.string()),
        }
    )


def rating_events(
    ratings: pd.DataFrame, dataset: str, click_threshold: int = 4
) -> list[dict[str, Any]]:
    """Every rating as a view, and as a click too when rating >= click_threshold."""
    users = ratings["user"].astype(str).tolist()
    items = ratings["item"].astype(str).tolist()
    stamps = pd.to_datetime(ratings["ts"], unit="s", utc=True).dt.to_pydatetime().tolist()
    clicks = (ratings["rating"] >= click_threshold).tolist()
    prefix = dataset.replace("-", "")
    events: list[dict[str, Any]] = []
    for user, item, stamp, click in zip(users, items, stamps, clicks, strict=True):
        base = {"timestamp": stamp, "user_id": user, "item_id": item, "source": "movielens"}
        events.append({"event_id": f"{prefix}-{user}-{item}-v", "event_type": "view", **base})
        if click:
            events.append({"event_id": f"{prefix}-{user}-{item}-c", "event_type": "click", **base})
    return events


def import_movielens(
    folder: str | Path,
    lake: Lake,
    settings: Settings | None = None,
    *,
    click_threshold: int = 4,
    batch_size: int = BATCH_SIZE,
    on_batch: Callable[[IngestReport], None] | None = None,
) -> ImportResult:
    """Ingest a MovieLens folder: rating events through the ingest path, items and users."""
    root = Path(folder)
    variant = detect(root)
    if not 1 <= click_threshold <= 6:
        raise ImportDataError("click threshold must be 1..6 (6: no clicks)")
    ratings = _ratings(root, variant)
    items = items_table(root, variant)
    users = users_table(root, variant)
    digest = file_digest(root / variant.ratings)
    events = rating_events(ratings, variant.name, click_threshold)
    ingestor = Ingestor(lake, settings)
    result = ImportResult(str(root), IngestReport())
    # Batches of whole time ranges (ratings are sorted), so an hour lands in one object.
    for number, lo in enumerate(range(0, len(events), batch_size)):
        chunk = events[lo : lo + batch_size]
        batch_id = f"{variant.name}-{digest}-t{click_threshold}-{number:05d}"
        part = ingestor.ingest_events(chunk, batch_id, chunk_size=batch_size)
        result.report += part
        if on_batch is not None:
            on_batch(part)
    as_of = (
        datetime.fromtimestamp(int(ratings["ts"].max()), UTC)
        if len(ratings)
        else datetime(1970, 1, 1, tzinfo=UTC)
    )
    result.catalogs["items"] = write_catalog(lake, "items", items, as_of, variant.name)
    result.catalogs["users"] = write_catalog(lake, "users", users, as_of, variant.name)
    return result
