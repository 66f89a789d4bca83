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
from pydantic import BaseModel

from app.adapters.api.auth import get_tokens
from app.adapters.api.deps import get_container
from app.adapters.api.problems import problem
from app.adapters.api.routing import ThreadPoolRoute
from app.adapters.api.tokens import TokenService
from app.bootstrap import Container
from app.services.clients import authenticate

router = APIRouter(tags=["auth"], route_class=ThreadPoolRoute)
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class TokenRead(BaseModel):
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
    responses={400: {}, 401: {}, 429: {}},
    summary="Exchange client credentials for an access token",
)
async def token(
    request: Request,
    container: Annotated[Container, Depends(get_container)],
    tokens: Annotated[TokenService, Depends(get_tokens)],
    grant_type: Annotated[str, Form()],
    client_id: Annotated[str | None, Form(max_length=200)] = None,
    client_secret: Annotated[str | None, Form(max_length=200)] = None,
) -> TokenRead | JSONResponse:
    if grant_type != "client_credentials":
        return _oauth_error(400, "unsupported_grant_type", "only client_credentials is supported")
    basic = _basic(request)
    if basic is not None:
        client_id, client_secret = basic
    if not client_id or not client_secret:
        return _oauth_error(400, "invalid_request", "client_id and client_secret are required")
    outcome = await run_in_threadpool(
        authenticate,
        container.uow(container.system_actor("oauth")),
        container.hasher,
        client_id,
        client_secret,
        datetime.now(UTC),
    )
    if outcome.client is None:
        await asyncio.sleep(outcome.delay * container.settings.auth_failure_delay_scale)
        return _oauth_error(
            401,
            "invalid_client",
            "client authentication failed",
            **{"WWW-Authenticate": 'Basic realm="iwrs"'},
        )
    access = tokens.issue(outcome.client)
    body = TokenRead(
        access_token=access,
        token_type="Bearer",  # noqa: S106 - the OAuth token type, not a secret
        expires_in=tokens.ttl_seconds,
    )
    return JSONResponse(body.model_dump(), headers=NO_STORE)
