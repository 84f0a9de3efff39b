"""The registry's champion as the monitor sees it: version, age, baseline start, known ids."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from recloop.monitoring.monitor import ModelInfo

if TYPE_CHECKING:
    from recloop.registry import ModelRegistry


def _utc(value: str | None) -> datetime | None:
    if not value:
        return None
    parsed = datetime.fromisoformat(value)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def champion_info(
    registry: ModelRegistry, known_ids: bool = True, cache_dir: Path | None = None
) -> ModelInfo | None:
    """ModelInfo of the approved champion, or None when there is none.

    Training time is the version's `created_at`, the baseline starts at its approval
    (`decided_at`). With `known_ids` the bundle is fetched (into `cache_dir`, or a temporary
    folder) for its item and user ids, which the drift detector needs.
    """
    champion = registry.champion()
    if champion is None:
        return None
    items = users = None
    if known_ids:
        from recloop.training.bundle import ModelBundle

        with tempfile.TemporaryDirectory() as tmp:
            dest = cache_dir / f"v{champion.version}" if cache_dir else Path(tmp)
            bundle = ModelBundle.load(registry.download(champion.version, dest), verify=False)
            items = np.asarray(bundle.item_ids).astype(str)
            users = np.asarray(bundle.user_ids).astype(str)
    return ModelInfo(
        champion.version,
        trained_at=_utc(champion.created_at),
        promoted_at=_utc(champion.decided_at),
        known_items=items,
        known_users=users,
    )
