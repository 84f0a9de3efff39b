"""Settings given by Secrets Manager reference (RECLOOP_<FIELD>_SECRET_ARN), as Lambdas get them.

Real boto3 calls against moto's Secrets Manager; the Settings are built the way the Lambda
handlers build them, from the process environment alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from recloop.config import Settings
from recloop.config_secrets import SecretsManagerSource, read_secrets, secret_references
from recloop.errors import ConfigError


@pytest.fixture
def secrets() -> Iterator[Any]:
    import boto3
    from moto import mock_aws

    with mock_aws():
        yield boto3.client("secretsmanager", region_name="us-east-1")


def _secret(client: Any, name: str, value: str) -> str:
    return str(client.create_secret(Name=name, SecretString=value)["ARN"])


def test_a_referenced_secret_becomes_the_setting(
    secrets: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = "mongodb://recloop:s3cret@docdb.internal:27017/recloop?tls=true"
    monkeypatch.delenv("RECLOOP_FEATURES_URI", raising=False)
    monkeypatch.setenv("RECLOOP_FEATURES_URI_SECRET_ARN", _secret(secrets, "features", uri))
    monkeypatch.setenv("RECLOOP_ENVIRONMENT", "prod")
    monkeypatch.setenv("RECLOOP_VISITOR_KEY_SECRET_ARN", _secret(secrets, "visitor", "k" * 64))
    settings = Settings()
    assert settings.features_uri == uri
    assert (
        settings.visitor_key.get_secret_value() == "k" * 64
    )  # prod accepts it: not the placeholder


def test_a_value_given_directly_wins_and_the_secret_is_not_read(
    secrets: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECLOOP_CANDIDATES_URI", "inprocess://")
    monkeypatch.setenv(
        "RECLOOP_CANDIDATES_URI_SECRET_ARN",
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:gone-AbCdEf",
    )
    assert Settings().candidates_uri == "inprocess://"  # the missing secret was never fetched


def test_an_unreadable_secret_is_a_config_error_naming_the_variable(
    secrets: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:missing-AbCdEf"
    monkeypatch.delenv("RECLOOP_FEATURES_URI", raising=False)
    monkeypatch.setenv("RECLOOP_FEATURES_URI_SECRET_ARN", arn)
    with pytest.raises(ConfigError, match="RECLOOP_FEATURES_URI_SECRET_ARN: cannot read"):
        Settings()


def test_a_reference_to_no_setting_is_refused() -> None:
    with pytest.raises(ConfigError, match="names no setting"):
        secret_references({"RECLOOP_FEATURS_URI_SECRET_ARN": "arn:aws:x"}, {"features_uri"})
    with pytest.raises(ConfigError, match="must be a Secrets Manager ARN"):
        secret_references({"RECLOOP_FEATURES_URI_SECRET_ARN": "hunter2"}, {"features_uri"})
    assert secret_references({"OTHER_SECRET_ARN": "x", "RECLOOP_X": "y"}, {"x"}) == {}


def test_no_reference_means_no_client_and_no_call() -> None:
    assert read_secrets({}, client=object()) == {}
    source = SecretsManagerSource(Settings, environ={"RECLOOP_LAKE_URI": "file:///x"})
    assert source() == {}


def test_an_empty_secret_is_refused(secrets: Any) -> None:
    arn = str(secrets.create_secret(Name="empty", SecretBinary=b"\x00")["ARN"])
    with pytest.raises(ConfigError, match="has no string value"):
        read_secrets({"features_uri": arn}, client=secrets)
