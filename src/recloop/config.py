"""Settings: every knob in one place, read from RECLOOP_* environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

# Ordered rules: the first regex whose named group `item` matches the URL path wins.
DEFAULT_URL_RULES: tuple[str, ...] = (
    r"^/(?:items|content|articles|movies|watch)/(?P<item>[A-Za-z0-9_-]+)/?$",
    r"^/(?:items|content|articles|movies)/(?P<item>[A-Za-z0-9_-]+)/(?:play|read|view)/?$",
)
DEFAULT_ASSET_SUFFIXES: tuple[str, ...] = (
    ".css",
    ".js",
    ".map",
    ".png",
    ".jpg",
    ".jpeg",
    ".gif",
    ".svg",
    ".ico",
    ".webp",
    ".woff",
    ".woff2",
    ".ttf",
    ".txt",
    ".xml",
)
DEFAULT_BOT_PATTERNS: tuple[str, ...] = (
    "bot",
    "crawl",
    "spider",
    "slurp",
    "curl/",
    "wget/",
    "python-requests",
    "httpclient",
    "headless",
    "monitor",
    "scrapy",
    "facebookexternalhit",
)
# Placeholder key for the anonymous visitor hash; refused outside dev (see validator).
_DEV_VISITOR_KEY = "recloop-dev-visitor-key"
_MIN_VISITOR_KEY = 16


def _default_root() -> Path:
    return Path.cwd() / ".recloop"


def local_root() -> Path:
    """Where local state lives by default (./.recloop): lake, registry, features, bundles."""
    return _default_root()


class Settings(BaseSettings):
    """recloop's configuration; each field is RECLOOP_<NAME> in the environment."""

    # hide_input_in_errors: a refused setting's error (a Lambda's or task's log) would otherwise
    # repeat the input, every RECLOOP_* value and secret the process was given.
    model_config = SettingsConfigDict(
        env_prefix="RECLOOP_", extra="ignore", env_file=None, hide_input_in_errors=True
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments, then RECLOOP_* variables, then RECLOOP_<FIELD>_SECRET_ARN references
        (read from Secrets Manager: how the Lambdas get credentials; see config_secrets)."""
        from recloop.config_secrets import SecretsManagerSource

        return (
            init_settings,
            env_settings,
            SecretsManagerSource(settings_cls),
            dotenv_settings,
            file_secret_settings,
        )

    environment: str = Field("dev", description="dev, staging or prod; prod refuses placeholders")
    lake_uri: str = Field(
        default_factory=lambda: (_default_root() / "lake").as_uri(),
        description="file:///path or s3://bucket/prefix",
    )
    # --- lake compaction (recloop lake compact, the compact Lambda) ---
    compact_lookback_hours: float = Field(
        96.0, gt=0, description="a scheduled compaction looks at the hours this far back"
    )
    compact_settle_minutes: float = Field(
        15.0, ge=0, description="an hour is closed (compactable) this long after it ends"
    )
    compact_rollup_after_hours: float = Field(
        48.0, ge=0, description="days that ended this long ago roll up into one unit; 0: never"
    )
    compact_target_mb: float = Field(128.0, gt=0, description="target size of a compacted file")

    # --- ingest business logic ---
    url_rules: tuple[str, ...] = DEFAULT_URL_RULES
    asset_suffixes: tuple[str, ...] = DEFAULT_ASSET_SUFFIXES
    bot_patterns: tuple[str, ...] = DEFAULT_BOT_PATTERNS
    visitor_key: SecretStr = SecretStr(_DEV_VISITOR_KEY)
    max_record_bytes: int = Field(256 * 1024, description="larger decoded records are quarantined")
    max_event_age_days: int = Field(365, description="older events are quarantined as too_old")
    max_clock_skew_seconds: int = Field(
        300, description="events further in the future: quarantined"
    )

    # --- monitoring (detectors, decision log, service metrics) ---
    monitor_current_minutes: int = Field(60, gt=0, description="engagement: the window under test")
    monitor_baseline_minutes: int = Field(360, gt=0, description="engagement: the model's baseline")
    monitor_attribution_minutes: int = Field(
        15, ge=0, description="a click counts if it comes this soon after its impression"
    )
    monitor_min_impressions: int = Field(
        300, ge=1, description="fewer impressions in either window: no verdict"
    )
    monitor_false_alarms_per_30_days: float = Field(
        1.0, gt=0, description="engagement drop: false alarms on-call accepts per 30 days"
    )
    monitor_guard_alpha: float = Field(
        0.01, gt=0, lt=1, description="level of the loop's one-shot comparisons (the guard)"
    )
    monitor_min_relative_drop: float = Field(
        0.20, gt=0, lt=1, description="the CTR drop the detector is tuned to find"
    )
    monitor_block_minutes: float = Field(15.0, gt=0, le=60, description="CUSUM step width")
    monitor_seasonality_days: float = Field(
        7.0, gt=0, description="CTR by hour of day is fitted over this many days"
    )
    monitor_max_model_age_hours: float = Field(168.0, gt=0, description="older: stale model")
    monitor_silence_minutes: int = Field(15, gt=0, description="no events this long: silent")
    monitor_drift_max_unknown_items: float = Field(0.20, ge=0, le=1)
    monitor_drift_max_unknown_users: float = Field(0.50, ge=0, le=1)
    monitor_drift_min_events: int = Field(200, ge=1, description="fewer events: no verdict")
    monitor_decision_log_uri: str | None = Field(
        None, description="JSON-lines decision log (default: decisions.jsonl beside the registry)"
    )
    monitor_service_metrics_uri: str = Field(
        default_factory=lambda: (_default_root() / "metrics" / "service.jsonl").as_uri(),
        description="JSON-lines service-metric snapshots the API appends to",
    )
    loop_config: str | None = Field(
        None,
        description="the retrain loop's whole configuration as JSON (recloop.loop.LoopConfig."
        "to_dict; times in seconds), instead of the one derived from the monitor_*, train_* "
        "and gate_* settings",
    )

    # --- serving (see docs/serving.md) ---
    features_uri: str = Field(
        default_factory=lambda: "sqlite:///" + str(_default_root() / "features.db"),
        description="sqlite:///path (embedded) or mongodb://... (DocumentDB)",
    )
    candidates_uri: str = Field(
        "inprocess://", description="inprocess:// or elasticsearch+https://host:9200 (or +http)"
    )
    events_uri: str = Field(
        "lake://", description="lake:// (ingest into the lake) or kinesis://STREAM"
    )
    cors_origins: tuple[str, ...] = Field((), description="origins the web frontend is served from")
    api_token: SecretStr | None = Field(None, description="bearer token for local use; None: open")
    origin_secret: SecretStr | None = Field(
        None, description="X-Origin-Verify value CloudFront sends; set: other requests get 403"
    )
    backend_timeout_ms: int = Field(50, ge=1, description="timeout of one feature/candidate call")
    history_write_timeout_ms: int = Field(
        250, ge=1, description="timeout of POST /events' history write (own circuit breaker)"
    )
    events_max_body_bytes: int = Field(
        4 * 1024 * 1024, ge=1024, description="larger POST /events bodies: 413, never read whole"
    )
    watch_interval_seconds: float = Field(10.0, gt=0, description="registry polling interval")
    guard_window_minutes: float = Field(
        120.0, ge=0, description="a new champion's guard window (serving and the loop's guard)"
    )
    guard_min_relative_loss: float = Field(
        0.10, gt=0, lt=1, description="the CTR loss the guard's sequential test is tuned to"
    )
    guard_holdback_share: float = Field(
        0.15,
        ge=0,
        le=0.5,
        description="share of users (hashed) the previous champion serves in the guard window",
    )
    backend_check_seconds: float = Field(
        10.0, gt=0, description="how often serving pings its backends (reported, never unready)"
    )
    model_cache_dir: Path = Field(
        default_factory=lambda: _default_root() / "serving-cache",
        description="where served model versions are downloaded (shared by workers)",
    )
    event_queue_size: int = Field(10_000, ge=1, description="events buffered before 503s")

    # --- training, registry and the champion/challenger gate (see docs/training.md) ---
    registry_uri: str = Field(
        default_factory=lambda: (_default_root() / "registry").as_uri(),
        description="file:///path, s3://bucket/prefix or sagemaker://<model-package-group>",
    )
    registry_artifacts_uri: str | None = Field(
        None, description="s3://bucket/prefix for bundles when the registry is sagemaker://"
    )
    model_image_uri: str | None = Field(
        None, description="serving image for SageMaker model packages' InferenceSpecification"
    )
    train_metric: str = Field("recall@10", description="the primary metric: search, pick, gate")
    train_k: int = Field(10, ge=1, description="K of every metric@K the pipeline reports")
    train_seed: int = Field(42, description="seed of the search, the splits and the bootstrap")
    train_holdout_days: float = Field(7.0, gt=0, description="the temporal holdout's length")
    train_validation_days: float = Field(7.0, gt=0, description="search window before the holdout")
    train_search_budget: int = Field(4, ge=1, description="configurations tried per family")
    train_eval_users: int = Field(10_000, ge=1, description="users sampled for evaluation")
    train_min_holdout_users: int = Field(
        200,
        ge=1,
        description="fewer holdout users: the gate refuses to decide (see docs/training.md)",
    )
    train_repeats: Literal["miss", "drop", "allow"] = Field(
        "miss",
        description="holdout items a user already had: miss (never recommended, counted), "
        "drop (not counted), allow (recommendable, counted)",
    )
    gate_margin: float = Field(
        0.01, ge=0, description="relative improvement of the primary metric a challenger needs"
    )
    gate_bootstrap_samples: int = Field(1000, ge=100, description="paired bootstrap resamples")
    gate_confidence: float = Field(0.95, gt=0.5, lt=1, description="two-sided interval level")
    sagemaker_role_arn: str | None = Field(None, description="execution role of training jobs")
    sagemaker_training_image_uri: str | None = Field(None, description="ECR training image")
    sagemaker_instance_type: str = Field("ml.m5.xlarge", description="training instance type")
    sagemaker_output_uri: str | None = Field(None, description="s3:// prefix for job output")

    @field_validator("origin_secret")
    @classmethod
    def _origin_secret_not_empty(cls, secret: SecretStr | None) -> SecretStr | None:
        # Set but empty (an unfilled secret, `RECLOOP_ORIGIN_SECRET=`) used to start a service
        # whose every request, /healthz included, failed with a 500: refuse it at start.
        if secret is not None and not secret.get_secret_value():
            raise ValueError("RECLOOP_ORIGIN_SECRET is empty; unset it to serve without the check")
        return secret

    @field_validator("url_rules")
    @classmethod
    def _rules_have_item_group(cls, rules: tuple[str, ...]) -> tuple[str, ...]:
        import re

        for rule in rules:
            if "item" not in re.compile(rule).groupindex:
                raise ValueError(f"url rule {rule!r} has no named group 'item'")
        return rules

    def model_post_init(self, __context: object) -> None:
        key = self.visitor_key.get_secret_value()
        if self.environment != "dev" and key == _DEV_VISITOR_KEY:
            raise ValueError(
                "RECLOOP_VISITOR_KEY is the development placeholder; set a secret key outside dev"
            )
        if self.environment != "dev" and len(key) < _MIN_VISITOR_KEY:
            # a short key can be brute-forced, and with it every visitor id maps back to an IP
            raise ValueError(
                f"RECLOOP_VISITOR_KEY is shorter than {_MIN_VISITOR_KEY} characters; "
                "use a random secret (e.g. 32 bytes from Secrets Manager)"
            )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
