"""`recloop serve`: the recommendation API under uvicorn (uvloop + httptools)."""

from __future__ import annotations

import os
import tempfile
from typing import TYPE_CHECKING

import typer

from recloop.cli._common import console, user_errors

if TYPE_CHECKING:
    from recloop.config import Settings

# Seconds uvicorn waits for requests in flight after SIGTERM before it closes connections.
_GRACEFUL_SECONDS = 20
# uvicorn kills a worker that does not answer its supervisor's ping within this many seconds;
# its default (5) kills workers still importing numpy & co. on a busy 2-core machine.
_WORKER_HEALTHCHECK_SECONDS = 60
_PUBLISH_TIMEOUT_MS = 120_000
# How long `serve` waits for the feature store to answer before starting without the catalogue.
_PROBE_TIMEOUT_MS = 2_000


def _publish_catalog(settings: Settings) -> None:
    """Titles, categories and availability for ranking, from the lake's newest items catalog."""
    from recloop.lake import Lake
    from recloop.serving.features import features_from_uri
    from recloop.serving.features.catalog import publish_catalog

    # The feature store may be down: serving then starts degraded instead of waiting for it
    # (the bulk timeout below would hold the start for minutes), and the catalogue is published
    # at the next start.
    probe = features_from_uri(settings.features_uri, timeout_ms=_PROBE_TIMEOUT_MS)
    try:
        probe.ping()
    except Exception as exc:  # any driver error: the store is not there now
        console.print(f"catalog not published, the feature store does not answer: {exc}"[:300])
        return
    finally:
        probe.close()
    # A bulk upsert, not a request: a request's deadline would cut a large catalogue short.
    store = features_from_uri(settings.features_uri, timeout_ms=_PUBLISH_TIMEOUT_MS)
    try:
        published = publish_catalog(Lake.from_uri(settings.lake_uri), store)
    finally:
        store.close()
    if published:
        console.print(f"catalog: {published:,} items published to {settings.features_uri}")


def register(app: typer.Typer) -> None:
    """Add the `serve` command."""

    @app.command()
    def serve(
        host: str = typer.Option("127.0.0.1", help="interface to listen on"),
        port: int = typer.Option(8000, min=1, max=65535, help="TCP port"),
        workers: int = typer.Option(1, min=1, max=64, help="uvicorn worker processes"),
        log_level: str = typer.Option("warning", help="uvicorn log level"),
        catalog: bool = typer.Option(
            True, help="publish the lake's items catalog into the feature store first"
        ),
    ) -> None:
        """Serve GET /recommendations, POST /events and friends; the web page is at /."""
        import uvicorn

        with user_errors():
            from recloop.config import get_settings

            settings = get_settings()  # fail here, with a one-line message, on bad settings
            if catalog:
                _publish_catalog(settings)
            from recloop.serving.workerenv import apply_worker_env

            apply_worker_env(os.environ)  # before uvicorn starts its worker processes
            if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
                # /metrics then sums every worker's values, whichever worker answers.
                os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="recloop-prom-")
            console.print(
                f"serving on http://{host}:{port} with {workers} worker(s); "
                f"registry {settings.registry_uri}"
            )
            uvicorn.run(
                "recloop.serving.app:app_from_env",
                factory=True,
                host=host,
                port=port,
                workers=workers,
                loop="uvloop",
                http="httptools",
                log_level=log_level,
                timeout_graceful_shutdown=_GRACEFUL_SECONDS,
                timeout_worker_healthcheck=_WORKER_HEALTHCHECK_SECONDS,
                access_log=False,
            )
