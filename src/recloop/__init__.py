"""recloop: a recommender service that keeps itself fresh."""

__version__ = "0.1.0"
