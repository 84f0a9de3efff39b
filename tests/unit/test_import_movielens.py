"""MovieLens import on tiny folders the tests write: 100K and 1M layouts, mapping, bad inputs."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from recloop.errors import ImportDataError
from recloop.importers import import_movielens
from recloop.lake import Lake

FLAGS = ["0"] * 19


def genre_flags(*indices: int) -> str:
    flags = list(FLAGS)
    for i in indices:
        flags[i] = "1"
    return "|".join(flags)


def write_100k(folder: Path) -> Path:
    folder.mkdir()
    (folder / "u.data").write_text(
        "1\t10\t5\t881250949\n2\t10\t3\t881250950\n1\t20\t4\t891717742\n2\t30\t1\t878887116\n"
    )
    (folder / "u.item").write_bytes(
        (
            f"10|Caf\xe9 Society (1995)|01-Jan-1995||http://imdb/x|{genre_flags(5, 8)}\n"
            f"20|GoldenEye (1995)|16-Nov-1995||http://imdb/y|{genre_flags(1, 2, 16)}\n"
            f"30|unknown||||{genre_flags(0)}\n"
        ).encode("latin-1")
    )
    (folder / "u.user").write_text("\n1|24|M|technician|85711\n2|53|F|other|94043\n")
    return folder


def write_1m(folder: Path) -> Path:
    folder.mkdir()
    (folder / "ratings.dat").write_text(
        "1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978298413\n"
    )
    (folder / "movies.dat").write_bytes(
        "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n"
        "661::James and the Giant Peach (1996)::Animation|Children's|Musical\n"
        "2000::Am\xe9lie (2001)::Comedy|Romance\n".encode("latin-1")
    )
    (folder / "users.dat").write_text("1::F::1::10::48067\n2::M::56::16::70072\n")
    return folder


def test_ml100k_ratings_become_views_and_clicks(tmp_path: Path, lake_uri: str) -> None:
    lake = Lake.from_uri(lake_uri)
    result = import_movielens(write_100k(tmp_path / "ml-100k"), lake)
    # 4 ratings -> 4 views; two ratings >= 4 -> 2 clicks
    assert result.report.to_dict() == {
        "received": 6,
        "written": 6,
        "filtered": {},
        "quarantined": {},
        "duplicates": 0,
    }
    table, _ = lake.read_events(columns=["user_id", "item_id", "event_type", "timestamp"])
    rows = {
        (r["user_id"], r["item_id"], r["event_type"]): r["timestamp"] for r in table.to_pylist()
    }
    assert (
        rows[("1", "10", "click")]
        == rows[("1", "10", "view")]
        == datetime.fromtimestamp(881250949, UTC)
    )
    assert ("2", "10", "click") not in rows and ("1", "20", "click") in rows
    items = {r["item_id"]: r for r in lake.read_catalog("items").to_pylist()}  # type: ignore[union-attr]
    assert items["10"]["title"] == "Café Society (1995)"
    assert items["10"]["categories"] == ["Comedy", "Drama"]
    assert items["20"]["publish_time"] == datetime(1995, 11, 16, tzinfo=UTC)
    assert items["30"]["publish_time"] is None and items["30"]["category"] == "unknown"
    users = lake.read_catalog("users").to_pylist()  # type: ignore[union-attr]
    assert users[1] == {
        "user_id": "2",
        "age": 53,
        "gender": "F",
        "occupation": "other",
        "zip_code": "94043",
    }


def test_ml1m_layout_with_double_colons(tmp_path: Path, lake_uri: str) -> None:
    lake = Lake.from_uri(lake_uri)
    result = import_movielens(write_1m(tmp_path / "ml-1m"), lake)
    assert (result.report.received, result.report.written) == (5, 5)
    items = {r["item_id"]: r for r in lake.read_catalog("items").to_pylist()}  # type: ignore[union-attr]
    assert items["661"]["categories"] == ["Animation", "Children's", "Musical"]
    assert items["2000"]["title"] == "Amélie (2001)"
    assert items["1193"]["publish_time"] == datetime(1975, 1, 1, tzinfo=UTC)
    users = {r["user_id"]: r for r in lake.read_catalog("users").to_pylist()}  # type: ignore[union-attr]
    assert users["2"]["occupation"] == "self-employed" and users["2"]["age"] == 56


def test_reimport_writes_nothing_twice(tmp_path: Path, lake_uri: str) -> None:
    lake = Lake.from_uri(lake_uri)
    folder = write_1m(tmp_path / "ml-1m")
    import_movielens(folder, lake)
    objects = sorted(info.key for info in lake.store.list(""))
    again = import_movielens(folder, lake)
    assert (again.report.written, again.report.duplicates) == (0, 5)
    assert not any(obj.created for obj in again.catalogs.values())
    assert sorted(info.key for info in lake.store.list("")) == objects


def test_click_threshold_is_configurable(tmp_path: Path, lake_uri: str) -> None:
    lake = Lake.from_uri(lake_uri)
    result = import_movielens(write_1m(tmp_path / "ml-1m"), lake, click_threshold=5)
    assert result.report.written == 3 + 1


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (lambda d: (d / "u.item").unlink(), "has u.data but no u.item"),
        (
            lambda d: (d / "u.data").write_text("1,10,5,881250949\n"),
            r"expected 4 tab-separated fields, found 1",
        ),
        (
            lambda d: (d / "u.data").write_text("1\t10\tfive\t881250949\n"),
            "rating 'five' is not a number",
        ),
        (lambda d: (d / "u.data").write_text("1\t10\t9\t881250949\n"), "rating outside 1..5"),
        (
            lambda d: (d / "u.data").write_text("1\t10\t5\t99999999999999\n"),
            "timestamp 99999999999999 is not epoch seconds",
        ),
        (
            lambda d: (d / "u.item").write_text("10,Movie,01-Jan-1995\n"),
            "u.item line 1: expected 24",
        ),
        (lambda d: (d / "u.user").write_text("1\t24\tM\ttechnician\t85711\n"), "u.user line 1"),
        (
            lambda d: (d / "u.user").write_text("1|24|M|x|857\n2|53|F\n"),
            "u.user line 3: expected 5 '|'-separated fields, found 3",
        ),
        (lambda d: (d / "u.data").write_text("1\t10\t5\t1\n1\t2\t3\t4\t5\n"), "u.data line 2"),
    ],
)
def test_broken_folders_get_clear_errors(
    tmp_path: Path,
    lake_uri: str,
    breakage,
    message: str,  # type: ignore[no-untyped-def]
) -> None:
    folder = write_100k(tmp_path / "ml-100k")
    breakage(folder)
    lake = Lake.from_uri(lake_uri)
    with pytest.raises(ImportDataError, match=message):
        import_movielens(folder, lake)
    assert lake.summary().rows == 0  # nothing half-imported


def test_missing_or_foreign_folders(tmp_path: Path, lake_uri: str) -> None:
    lake = Lake.from_uri(lake_uri)
    with pytest.raises(ImportDataError, match="is not a folder"):
        import_movielens(tmp_path / "absent", lake)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImportDataError, match=r"neither u\.data"):
        import_movielens(tmp_path / "empty", lake)
    folder = write_1m(tmp_path / "ml-1m")
    (folder / "ratings.dat").write_text("1\t1193\t5\t978300760\n")
    with pytest.raises(ImportDataError, match="expected 4 '::'-separated fields"):
        import_movielens(folder, lake)
