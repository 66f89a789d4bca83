"""Settings from the environment (`IWRS_*`), validated once at start-up."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_database_url() -> str:
    return f"sqlite:///{Path.cwd() / 'iwrs.db'}"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="IWRS_", extra="ignore", frozen=True)

    database_url: str = Field(default_factory=_default_database_url)
    keys_dir: Path = Path("keys")
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] = "json"
    token_issuer: str = "iwrs"  # noqa: S105 - an issuer name, not a secret
    token_audience: str = "iwrs-api"  # noqa: S105 - an audience name, not a secret
    token_ttl_seconds: int = Field(default=900, ge=60, le=3600)
    workers: int = Field(default=1, ge=1, le=64)
    # Requests a worker runs at once (its thread pool): a few threads keep the database busy;
    # many only contend for the interpreter while holding row locks.
    worker_threads: int = Field(default=4, ge=1, le=200)
    # How often a server worker marks expired kits and resupplies (0: never; run
    # `iwrs kits expire` from a scheduler instead).
    housekeeping_seconds: float = Field(default=3600, ge=0)
    # How long the answer to a POST with an Idempotency-Key is kept for its retries (24 h):
    # after it the key is free again, and housekeeping deletes the record.
    idempotency_retention_seconds: int = Field(default=86_400, ge=60, le=30 * 86_400)
    # Multiplies the growing delay before answering a failed token request (0 in tests).
    auth_failure_delay_scale: float = Field(default=1.0, ge=0, le=10)
    # Request size limits (app.adapters.api.middleware.LimitsMiddleware): a JSON or form body,
    # a randomization list upload, and the request's headers (names and values, and count).
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    max_upload_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    max_header_bytes: int = Field(default=16 * 1024, ge=1024)
    max_headers: int = Field(default=100, ge=10)
    # Only `iwrs simulate` sets this: a clock it can move forward (see app.adapters.clock).
    simulation_clock_file: Path | None = None
    # Key material for containers, instead of files under keys_dir (checked when loaded, by
    # app.adapters.crypto.keyring, so that no error message can echo it):
    kek: SecretStr | None = None  # IWRS_KEK: base64 of the 32-byte key-encryption key
    kek_id: str | None = Field(default=None, max_length=64)  # IWRS_KEK_ID: its kid
    token_signing_key: SecretStr | None = None  # IWRS_TOKEN_SIGNING_KEY: Ed25519 PEM

    @field_validator("database_url")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        if not value.startswith(("sqlite://", "postgresql://", "postgresql+psycopg://")):
            raise ValueError("must be a sqlite:/// or postgresql:// URL")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value
