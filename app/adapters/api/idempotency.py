"""The `Idempotency-Key` header of POSTs: a guard for the unit of work, and the replay."""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any

from fastapi import FastAPI, Header, Request
from fastapi.responses import Response

from app.adapters.db.idempotency import IdempotencyGuard, IdempotentReplay, Render
from app.domain.access import Principal


class IdempotencyRequest:
    """What a router needs to make a guard: the key and the request's fingerprint."""

    def __init__(self, key: str | None, fingerprint: str) -> None:
        self.key = key
        self.fingerprint = fingerprint

    def guard(self, principal: Principal, render: Render) -> IdempotencyGuard | None:
        if self.key is None:
            return None
        return IdempotencyGuard(principal.subject, self.key, self.fingerprint, render)


async def idempotency_request(
    request: Request,
    idempotency_key: Annotated[
        str | None,
        Header(
            min_length=1,
            max_length=255,
            description="retry safely: the same key with the same body returns the first answer",
        ),
    ] = None,
) -> IdempotencyRequest:
    if idempotency_key is None:
        return IdempotencyRequest(None, "")  # nothing to replay: no fingerprint to take
    raw = await request.body()
    try:
        canonical: Any = json.loads(raw) if raw else None
        body = json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode()
    except ValueError:
        body = raw
    digest = hashlib.sha256(
        request.method.encode() + b" " + request.url.path.encode() + b"\n" + body
    ).hexdigest()
    return IdempotencyRequest(idempotency_key, digest)


def install_replay_handler(app: FastAPI) -> None:
    @app.exception_handler(IdempotentReplay)
    async def _replay(_request: Request, exc: IdempotentReplay) -> Response:
        return Response(
            exc.body,
            status_code=exc.status_code,
            media_type="application/json",
            headers={"Idempotent-Replayed": "true"},
        )
