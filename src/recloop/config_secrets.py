"""Settings read from Secrets Manager: RECLOOP_<FIELD>_SECRET_ARN names the secret of a field.

ECS injects secrets into a task's environment itself (the task definition's `secrets`), but a
Lambda function has no such mechanism: its environment variables are visible to anyone who may
read the function's configuration, and they sit in Terraform's plan and state. So Terraform
gives the Lambdas the secret's ARN (RECLOOP_FEATURES_URI_SECRET_ARN, ...) and the process reads
the value at start-up, with its own role. A value set directly (RECLOOP_FEATURES_URI) wins.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from recloop.errors import ConfigError

PREFIX = "RECLOOP_"
SUFFIX = "_SECRET_ARN"


def secret_references(environ: Mapping[str, str], fields: set[str]) -> dict[str, str]:
    """Field name -> secret ARN for every RECLOOP_<FIELD>_SECRET_ARN in `environ`.

    A reference to no setting is an error, not silently ignored: a misspelt name would leave
    the field at its (development) default."""
    found: dict[str, str] = {}
    for name, arn in environ.items():
        upper = name.upper()
        if not (upper.startswith(PREFIX) and upper.endswith(SUFFIX)):
            continue
        field = upper[len(PREFIX) : -len(SUFFIX)].lower()
        if field not in fields:
            raise ConfigError(f"{name} names no setting ({field!r} is not a recloop setting)")
        if not arn.startswith("arn:"):
            raise ConfigError(f"{name} must be a Secrets Manager ARN, got {arn[:20]!r}...")
        found[field] = arn
    return found


def read_secrets(references: Mapping[str, str], client: Any = None) -> dict[str, str]:
    """Field name -> the secret's string, one GetSecretValue per referenced secret."""
    if not references:
        return {}
    if client is None:
        import boto3

        client = boto3.client("secretsmanager")
    from botocore.exceptions import BotoCoreError, ClientError

    values: dict[str, str] = {}
    for field, arn in references.items():
        variable = f"{PREFIX}{field.upper()}{SUFFIX}"
        try:
            reply = client.get_secret_value(SecretId=arn)
        except (ClientError, BotoCoreError) as exc:
            # The message names the variable and the secret, never a value.
            raise ConfigError(f"{variable}: cannot read {arn}: {exc}") from exc
        value = reply.get("SecretString")
        if not value:
            raise ConfigError(f"{variable}: {arn} has no string value")
        values[field] = value
    return values


class SecretsManagerSource(PydanticBaseSettingsSource):
    """A settings source after the environment: fields whose value is given by reference."""

    def __init__(
        self,
        settings_cls: type[BaseSettings],
        environ: Mapping[str, str] | None = None,
        client: Any = None,
    ) -> None:
        super().__init__(settings_cls)
        self._environ = environ
        self._client = client

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # everything is resolved at once in __call__

    def __call__(self) -> dict[str, Any]:
        import os

        environ = os.environ if self._environ is None else self._environ
        fields = set(self.settings_cls.model_fields)
        references = secret_references(environ, fields)
        # A value given directly wins over a reference (and saves the call).
        pending = {f: arn for f, arn in references.items() if f"{PREFIX}{f.upper()}" not in environ}
        return dict(read_secrets(pending, self._client))
