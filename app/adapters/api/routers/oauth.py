"""OAuth 2.0 client credentials (RFC 6749 section 4.4): form body or HTTP Basic."""

from __future__ import annotations

import asyncio
import base64
import binascii
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from app.adapters.api import ratelimit
from app.adapters.api.auth import get_tokens
from app.adapters.api.deps import get_container
from app.adapters.api.openapi import problems
from app.adapters.api.problems import problem
from app.adapters.api.routing import ThreadPoolRoute
from app.adapters.api.tokens import TokenService
from app.bootstrap import Container
from app.domain.clients import AuthenticationFailed, Throttled
from app.services.clients import authenticate

router = APIRouter(tags=["auth"], route_class=ThreadPoolRoute)
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class TokenCreate(BaseModel):
    """The token request's form; the client may authenticate with HTTP Basic instead of
    `client_id` and `client_secret` (RFC 6749 2.3.1). Other fields (`scope`) are ignored."""

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "examples": [
                {
                    "grant_type": "client_credentials",
                    "client_id": "c_7Hq2mX9v",
                    "client_secret": "s_example-secret-printed-once",
                }
            ]
        },
    )

    grant_type: str = Field(description="client_credentials")
    client_id: str | None = Field(default=None, max_length=200)
    client_secret: str | None = Field(default=None, max_length=200)


class TokenRead(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "access_token": "eyJhbGciOiJFZERTQSJ9.e30.c2ln",
                    "token_type": "Bearer",
                    "expires_in": 900,
                }
            ]
        }
    )

    access_token: str
    token_type: str
    expires_in: int


def _oauth_error(status: int, error: str, detail: str, **headers: str) -> JSONResponse:
    # problem+json as the contract wants, with RFC 6749's `error` for OAuth libraries.
    return problem(status, error, detail, headers={**NO_STORE, **headers}, error=error)


def _basic(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("basic "):
        return None
    try:
        raw = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, sep, secret = raw.partition(":")
    return (client_id, secret) if sep else None


@router.post(
    "/oauth/token",
    response_model=TokenRead,
    operation_id="issue_token",
    summary="Exchange client credentials for an access token",
)
@problems("unsupported_grant_type", "invalid_request", AuthenticationFailed, Throttled)
async def token(
    request: Request,
    container: Annotated[Container, Depends(get_container)],
    tokens: Annotated[TokenService, Depends(get_tokens)],
    form: Annotated[TokenCreate, Form()],
) -> TokenRead | JSONResponse:
    client_id, client_secret = form.client_id, form.client_secret
    if form.grant_type != "client_credentials":
        return _oauth_error(400, "unsupported_grant_type", "only client_credentials is supported")
    basic = _basic(request)
    if basic is not None:
        client_id, client_secret = basic
    if not client_id or not client_secret:
        return _oauth_error(400, "invalid_request", "client_id and client_secret are required")
    now = datetime.now(UTC)
    outcome = await run_in_threadpool(
        authenticate,
        container.uow(container.system_actor("oauth")),
        container.hasher,
        client_id,
        client_secret,
        now,
    )
    limits = ratelimit.after(outcome.throttle, now)
    if outcome.client is None:
        await asyncio.sleep(outcome.delay * container.settings.auth_failure_delay_scale)
        return _oauth_error(
            401,
            "invalid_client",
            "client authentication failed",
            **{"WWW-Authenticate": 'Basic realm="iwrs"'},
            **limits,
        )
    access = tokens.issue(outcome.client)
    body = TokenRead(
        access_token=access,
        token_type="Bearer",  # noqa: S106 - the OAuth token type, not a secret
        expires_in=tokens.ttl_seconds,
    )
    return JSONResponse(body.model_dump(), headers={**NO_STORE, **limits})
