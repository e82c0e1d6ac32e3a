"""The central API's configuration, read from ``NBEDGE_CENTRAL_*`` environment variables.

Settings refuse to start with a default or guessable platform token: a central API that anyone
can read is worse than one that does not start.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MIN_TOKEN_LENGTH = 16
MIN_SILENT_AFTER_S = 60
_WEAK_TOKENS = frozenset({"changeme", "changethis", "secret", "password", "token"})


class CentralSettings(BaseSettings):
    """Everything the central API needs to start. ``platform_token`` has no default on purpose."""

    model_config = SettingsConfigDict(env_prefix="NBEDGE_CENTRAL_", extra="forbid")

    database_url: str = "sqlite:///central.db"
    """SQLAlchemy URL: ``sqlite:///path.db`` by default, ``postgresql+psycopg://...`` later."""

    platform_token: SecretStr
    """Bearer token with which the neighbourhood platform pulls the feeds."""

    max_body_bytes: Annotated[int, Field(gt=0)] = 8 * 1024 * 1024
    """Largest ingest body accepted, both as sent and after gzip decompression."""

    gateway_silent_after_s: Annotated[int, Field(ge=0, le=30 * 86_400)] = 900
    """Raise ``gateway_silent`` for a gateway not heard for this long (0: never); 60 at least."""

    check_interval_s: Annotated[float, Field(ge=0.01, le=3600)] = 30.0
    """How often each process expires commands and looks for silent gateways."""

    @field_validator("gateway_silent_after_s")
    @classmethod
    def _long_enough(cls, value: int) -> int:
        if 0 < value < MIN_SILENT_AFTER_S:
            raise ValueError(f"0 (off) or at least {MIN_SILENT_AFTER_S} seconds")
        return value

    @field_validator("platform_token")
    @classmethod
    def _refuse_weak_token(cls, value: SecretStr) -> SecretStr:
        token = value.get_secret_value()
        if not token.strip() or token.strip().lower() in _WEAK_TOKENS:
            raise ValueError("set a random platform token, e.g. `openssl rand -hex 32`")
        if len(token) < MIN_TOKEN_LENGTH:
            raise ValueError(f"the platform token must be at least {MIN_TOKEN_LENGTH} characters")
        return value
