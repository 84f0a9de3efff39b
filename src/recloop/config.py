"""Settings: every knob in one place, read from RECLOOP_* environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Ordered rules: the first regex whose named group `item` matches the URL path wins.
DEFAULT_URL_RULES: tuple[str, ...] = (
    r"^/(?:items|content|articles|movies|watch)/(?P<item>[A-Za-z0-9_-]+)/?$",
    r"^/(?:items|content|articles|movies)/(?P<item>[A-Za-z0-9_-]+)/(?:play|read|view)/?$",
)
DEFAULT_ASSET_SUFFIXES: tuple[str, ...] = (
    ".css", ".js", ".map", ".png", ".jpg", ".jpeg", ".gif", ".svg", ".ico", ".webp",
    ".woff", ".woff2", ".ttf", ".txt", ".xml",
)
DEFAULT_BOT_PATTERNS: tuple[str, ...] = (
    "bot", "crawl", "spider", "slurp", "curl/", "wget/", "python-requests", "httpclient",
    "headless", "monitor", "scrapy", "facebookexternalhit",
)
# Placeholder key for the anonymous visitor hash; refused outside dev (see validator).
_DEV_VISITOR_KEY = "recloop-dev-visitor-key"


def _default_root() -> Path:
    return Path.cwd() / ".recloop"


class Settings(BaseSettings):
    """recloop's configuration; each field is RECLOOP_<NAME> in the environment."""

    model_config = SettingsConfigDict(env_prefix="RECLOOP_", extra="ignore", env_file=None)

    environment: str = Field("dev", description="dev, staging or prod; prod refuses placeholders")
    lake_uri: str = Field(
        default_factory=lambda: (_default_root() / "lake").as_uri(),
        description="file:///path or s3://bucket/prefix",
    )

    # --- ingest business logic ---
    url_rules: tuple[str, ...] = DEFAULT_URL_RULES
    asset_suffixes: tuple[str, ...] = DEFAULT_ASSET_SUFFIXES
    bot_patterns: tuple[str, ...] = DEFAULT_BOT_PATTERNS
    visitor_key: SecretStr = SecretStr(_DEV_VISITOR_KEY)
    max_record_bytes: int = Field(256 * 1024, description="larger decoded records are quarantined")
    max_event_age_days: int = Field(365, description="older events are quarantined as too_old")
    max_clock_skew_seconds: int = Field(300, description="events further in the future: quarantined")

    @field_validator("url_rules")
    @classmethod
    def _rules_have_item_group(cls, rules: tuple[str, ...]) -> tuple[str, ...]:
        import re

        for rule in rules:
            if "item" not in re.compile(rule).groupindex:
                raise ValueError(f"url rule {rule!r} has no named group 'item'")
        return rules

    def model_post_init(self, __context: object) -> None:
        if self.environment != "dev" and self.visitor_key.get_secret_value() == _DEV_VISITOR_KEY:
            raise ValueError(
                "RECLOOP_VISITOR_KEY is the development placeholder; set a secret key outside dev"
            )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
