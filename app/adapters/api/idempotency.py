"""The `Idempotency-Key` header of POSTs: a guard for the unit of work, and the replay."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from typing import Annotated, Any

from fastapi import FastAPI, Header, Request
from fastapi.responses import Response

from app.adapters.db.idempotency import (
    DEFAULT_RETENTION,
    IdempotencyGuard,
    IdempotentReplay,
    Render,
)
from app.domain.access import Principal
from app.domain.errors import StudyNotFound


class IdempotencyRequest:
    """What a router needs to make a guard: the key, the request's fingerprint, the study
    its path names (if any) and how long answers are kept."""

    def __init__(
        self,
        key: str | None,
        fingerprint: str,
        study: str | None = None,
        retention: timedelta = DEFAULT_RETENTION,
    ) -> None:
        self.key = key
        self.fingerprint = fingerprint
        self.study = study
        self.retention = retention

    def guard(self, principal: Principal, render: Render) -> IdempotencyGuard | None:
        """A replay is answered only to a caller a new request would be answered to: the
        route's authorization dependency has run (role, a still valid client), the token must
        still name the study, and a route checks the rest itself before answering from a
        replay (the unblinding route: the policy, the token's freshness, the subject's site)."""
        if self.key is None:
            return None
        study = self.study

        def recheck() -> None:
            if study is not None and not principal.sees_study(study):
                raise StudyNotFound(f"no study {study!r}")

        return IdempotencyGuard(
            principal.subject, self.key, self.fingerprint, render, self.retention, recheck
        )


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
    retention = request.app.state.container.settings.idempotency_retention_seconds
    return IdempotencyRequest(
        idempotency_key,
        digest,
        request.path_params.get("study"),
        timedelta(seconds=retention),
    )


def install_replay_handler(app: FastAPI) -> None:
    @app.exception_handler(IdempotentReplay)
    async def _replay(_request: Request, exc: IdempotentReplay) -> Response:
        return Response(
            exc.body,
            status_code=exc.status_code,
            media_type="application/json",
            headers={"Idempotent-Replayed": "true"},
        )
