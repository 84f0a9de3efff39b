"""LoopConfig as JSON (RECLOOP_LOOP_CONFIG): every field survives the trip, mistakes are named."""

from __future__ import annotations

import json

import pytest

from recloop.config import Settings
from recloop.errors import ConfigError
from recloop.loop import LoopConfig
from recloop.loop.demo import DemoConfig


@pytest.mark.parametrize(
    "config",
    [LoopConfig(), DemoConfig.quick().loop_config(), DemoConfig().for_aws().loop_config()],
    ids=["defaults", "quick demo", "aws demo"],
)
def test_a_loop_config_round_trips_through_json(config: LoopConfig) -> None:
    text = json.dumps(config.to_dict())

    assert LoopConfig.from_dict(json.loads(text)) == config
    assert LoopConfig.from_settings(Settings(loop_config=text)) == config


def test_missing_keys_keep_their_defaults_and_unknown_ones_are_refused() -> None:
    partial = LoopConfig.from_dict({"cooldown": 30, "guard": {"min_impressions": 5}})

    assert partial.cooldown.total_seconds() == 30 and partial.guard.min_impressions == 5
    assert partial.monitor == LoopConfig().monitor
    with pytest.raises(ConfigError, match="coldown"):
        LoopConfig.from_dict({"coldown": 30})
    with pytest.raises(ConfigError, match="not JSON"):
        LoopConfig.from_settings(Settings(loop_config="{cooldown: 30"))
