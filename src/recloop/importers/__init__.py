"""Importers: outside datasets into the lake through the same ingest path as weblogs.

import_interactions("events.csv", lake)      # user_id, item_id, timestamp[, event_type]
import_movielens("ml-100k/", lake)           # ratings -> views and clicks; items; users
"""

from recloop.importers._common import ImportResult, Problems, write_catalog
from recloop.importers.interactions import import_interactions, parse_timestamp
from recloop.importers.movielens import detect, import_movielens, items_table, users_table

__all__ = [
    "ImportResult",
    "Problems",
    "detect",
    "import_interactions",
    "import_movielens",
    "items_table",
    "parse_timestamp",
    "users_table",
    "write_catalog",
]
