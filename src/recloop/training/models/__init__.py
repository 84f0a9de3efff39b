"""Model families behind one contract (see base.Recommender).

FAMILIES maps a family name (as stored in model.json) to its class; `make(family, **params)`
builds one with its defaults.
"""

from typing import Any

from recloop.training.models.als import ALS
from recloop.training.models.base import ModelError, Recommender
from recloop.training.models.bpr import BPR
from recloop.training.models.ease import EASE
from recloop.training.models.itemknn import ItemKNN
from recloop.training.models.popularity import Popularity, RecentPopularity

FAMILIES: dict[str, type[Recommender]] = {
    cls.family: cls
    for cls in (
        Popularity,
        RecentPopularity,
        ALS,
        BPR,
        ItemKNN,
        EASE,
    )
}


def make(family: str, **params: Any) -> Recommender:
    """A fresh model of `family` with `params` over its defaults; ModelError when unknown."""
    cls = FAMILIES.get(family)
    if cls is None:
        raise ModelError(f"unknown model family {family!r}; known: {sorted(FAMILIES)}")
    return cls(**params)


__all__ = ["FAMILIES", "ModelError", "Recommender", "make"]
