"""Invalid RECLOOP_* settings: a clear error naming the variable, exit 2, no traceback."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest
from pydantic import ValidationError

from recloop.cli import main, settings_error
from recloop.config import Settings, get_settings


@pytest.fixture(autouse=True)
def fresh_settings() -> Iterator[None]:
    get_settings.cache_clear()  # the CLI reads the process-wide settings once
    yield
    get_settings.cache_clear()


def run_cli(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", ["recloop", *args])
    with pytest.raises(SystemExit) as exited:
        main()
    return int(exited.value.code or 0)


def test_an_unparsable_setting_is_named_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RECLOOP_BACKEND_CHECK_SECONDS", "abc")
    assert run_cli(monkeypatch, "lake", "summary") == 2
    err = capsys.readouterr().err
    assert "RECLOOP_BACKEND_CHECK_SECONDS: Input should be a valid number" in err
    assert "Traceback" not in err


def test_a_refused_secret_is_never_echoed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # pydantic's own message repeats the input: every RECLOOP_* value, secrets included.
    monkeypatch.setenv("RECLOOP_ENVIRONMENT", "prod")
    monkeypatch.setenv("RECLOOP_VISITOR_KEY", "tiny-secret")
    assert run_cli(monkeypatch, "lake", "summary") == 2
    err = capsys.readouterr().err
    assert "RECLOOP_VISITOR_KEY is shorter than" in err
    assert "tiny-secret" not in err


def test_an_empty_origin_secret_is_refused_at_start() -> None:
    # Set but empty, it used to start a service whose every request (/healthz too) was a 500.
    with pytest.raises(ValidationError, match="RECLOOP_ORIGIN_SECRET is empty"):
        Settings(origin_secret="")
    assert Settings().origin_secret is None
    secret = Settings(origin_secret="s3cret").origin_secret
    assert secret is not None and secret.get_secret_value() == "s3cret"


def test_other_errors_are_left_to_propagate() -> None:
    assert settings_error(ValueError("not about settings")) is None


def test_an_error_message_prints_as_written(capsys: pytest.CaptureFixture[str]) -> None:
    # Rich read ":secret:" in an ARN as an emoji code and "[...]" as markup.
    import typer

    from recloop.cli._common import user_errors
    from recloop.errors import ConfigError

    arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:app-[x]/key"
    with pytest.raises(typer.Exit) as exited, user_errors():
        raise ConfigError(f"cannot read {arn}: [/bold] denied")
    assert exited.value.exit_code == 2
    assert f"error: cannot read {arn}: [/bold] denied" in capsys.readouterr().err


def test_a_refused_setting_never_repeats_the_secrets_in_its_error() -> None:
    # What a Lambda or the serving task logs when its settings are refused: pydantic's text
    # repeated the input (a mistyped value, or the whole dict of settings with their secrets).
    with pytest.raises(ValidationError) as refused:
        Settings(environment="prod", visitor_key="tiny-secret")
    assert "RECLOOP_VISITOR_KEY is shorter than" in str(refused.value)
    assert "tiny-secret" not in str(refused.value)
    with pytest.raises(ValidationError) as refused:
        Settings(backend_check_seconds="pasted-a-secret-here")
    assert "pasted-a-secret" not in str(refused.value)
