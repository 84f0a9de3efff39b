"""One loop from settings, for every caller: `recloop loop`, the monitor and promote Lambdas.

    loop = build_loop(Settings())          # lake, registry, decision log, trainer from RECLOOP_*

The trainer is a SageMaker training job when RECLOOP_SAGEMAKER_TRAINING_IMAGE_URI and
RECLOOP_SAGEMAKER_ROLE_ARN are set (what Terraform gives the Lambdas), else the pipeline in this
process (a laptop). A Lambda cannot train in its 15 minutes: it asks for SageMaker.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from recloop.config import Settings
from recloop.errors import ConfigError
from recloop.lake import Lake
from recloop.lake.store import store_from_uri
from recloop.loop.cache import CachedStore
from recloop.loop.controller import LoopConfig, RetrainLoop
from recloop.loop.training import InProcessTrainer, SageMakerTrainer, Trainer
from recloop.monitoring.decisions import DecisionLog


def build_loop(
    settings: Settings,
    *,
    s3_client: Any = None,
    sagemaker_client: Any = None,
    boto_session: Any = None,
    trainer: Trainer | None = None,
    cache_dir: Path | None = None,
    require_sagemaker: bool = False,
) -> RetrainLoop:
    """The controller on the settings' lake, registry and decision log, with its trainer."""
    from recloop.registry import registry_from_uri

    # A pass re-reads the same recent, immutable lake objects: kept for the process's life.
    lake = Lake(CachedStore(store_from_uri(settings.lake_uri, s3_client=s3_client)))
    registry = registry_from_uri(
        settings.registry_uri,
        s3_client=s3_client,
        sagemaker_client=sagemaker_client,
        artifacts_uri=settings.registry_artifacts_uri,
    )
    decisions = DecisionLog.from_settings(settings, s3_client=s3_client)
    if trainer is None:
        if settings.sagemaker_training_image_uri and settings.sagemaker_role_arn:
            trainer = SageMakerTrainer(launch_config(settings), boto_session=boto_session)
        elif require_sagemaker:
            raise ConfigError(
                "the loop here retrains with SageMaker training jobs: set "
                "RECLOOP_SAGEMAKER_TRAINING_IMAGE_URI and RECLOOP_SAGEMAKER_ROLE_ARN"
            )
        else:
            trainer = InProcessTrainer(lake, registry)
    return RetrainLoop(
        lake,
        registry,
        decisions,
        LoopConfig.from_settings(settings),
        cache_dir=cache_dir or Path(settings.model_cache_dir).parent / "loop-cache",
        trainer=trainer,
        s3_client=s3_client,
    )


def launch_config(settings: Settings) -> Any:
    """The SageMaker job settings of `settings` (recloop.training.sagemaker.LaunchConfig)."""
    from recloop.training.sagemaker import LaunchConfig

    config = LaunchConfig(
        image_uri=settings.sagemaker_training_image_uri or "",
        role_arn=settings.sagemaker_role_arn or "",
        lake_uri=settings.lake_uri,
        output_uri=settings.sagemaker_output_uri or "",
        registry_uri=settings.registry_uri,
        registry_artifacts_uri=settings.registry_artifacts_uri,
        instance_type=settings.sagemaker_instance_type,
    )
    config.validate()
    return config
