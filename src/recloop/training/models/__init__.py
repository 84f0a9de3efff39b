"""Model families behind one contract (see base.Recommender)."""

from recloop.training.models.base import ModelError, Recommender

# family name -> class; each family module adds itself here when it is written.
FAMILIES: dict[str, type[Recommender]] = {}

__all__ = ["FAMILIES", "ModelError", "Recommender"]
