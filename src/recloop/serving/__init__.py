"""The recommendation API: FastAPI app, feature store, candidate sources, ranking, hot swap.

Entry point: `recloop.serving.app.create_app(settings)`; see docs/serving.md.
"""
