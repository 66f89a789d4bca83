"""Request id (taken from a sane `X-Request-ID` or made) on every response and log line,
one access log line per request, and the request size limits."""

from __future__ import annotations

import logging
import re
import time
import uuid
from dataclasses import dataclass

from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.adapters.api.problems import problem
from app.adapters.logs import request_id_var
from app.settings import Settings

_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
access_log = logging.getLogger("iwrs.access")
log = logging.getLogger("iwrs.api")


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"), "")
        rid = given if _SAFE_ID.match(given) else uuid.uuid4().hex
        token = request_id_var.set(rid)
        started = time.perf_counter()
        status = 500
        started_response = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, started_response
            if message["type"] == "http.response.start":
                status, started_response = message["status"], True
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            # Rendered here, inside the request id, rather than by Starlette's outer handler.
            log.exception("unhandled error")
            if started_response:
                raise
            response = problem(500, "internal_error", "an unexpected error; quote the request id")
            await response(scope, receive, send_with_id)
        finally:
            access_log.info(
                "request",
                extra={
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                },
            )
            request_id_var.reset(token)


# The only routes whose body may exceed the JSON limit: (method, path pattern).
UPLOAD_ROUTES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("POST", re.compile(r"^/api/v1/studies/[^/]+/randomization-list/upload$")),
)


@dataclass(frozen=True, slots=True)
class Limits:
    body_bytes: int
    upload_bytes: int
    header_bytes: int
    headers: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(
            body_bytes=settings.max_body_bytes,
            upload_bytes=settings.max_upload_bytes,
            header_bytes=settings.max_header_bytes,
            headers=settings.max_headers,
        )

    def body_limit(self, method: str, path: str) -> int:
        uploads = any(m == method and p.match(path) for m, p in UPLOAD_ROUTES)
        return self.upload_bytes if uploads else self.body_bytes


class BodyTooLarge(HTTPException):
    """Raised from `receive` once the body passes its limit: whoever is reading it stops."""

    def __init__(self) -> None:
        super().__init__(413, "the request body is too large")


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _refusal(status: int, code: str, detail: str, **extra: int) -> JSONResponse:
    # Connection: close, so the server stops reading what the client still sends.
    return problem(status, code, detail, headers={"Connection": "close"}, **extra)


def _too_large(limit: int) -> JSONResponse:
    return _refusal(413, "request_too_large", "the request body is too large", max_body_bytes=limit)


class LimitsMiddleware:
    """Refuses, before the app reads them whole, headers past their size or count (431) and a
    body past its route's limit (413): a declared Content-Length is checked before the app
    runs, and the bytes actually streamed are counted as the app reads them."""

    def __init__(self, app: ASGIApp, limits: Limits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = scope["headers"]
        if (
            len(headers) > self.limits.headers
            or sum(len(k) + len(v) for k, v in headers) > self.limits.header_bytes
        ):
            response = _refusal(
                431,
                "request_headers_too_large",
                "the request's headers are too many or too large",
                max_header_bytes=self.limits.header_bytes,
                max_headers=self.limits.headers,
            )
            await response(scope, receive, send)
            return
        limit = self.limits.body_limit(scope["method"], scope["path"])
        declared = _declared_length(scope)
        if declared is not None and declared > limit:
            await _too_large(limit)(scope, receive, send)
            return
        received = 0
        refused = started = False

        async def limited_receive() -> Message:
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    refused = True
                    raise BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused and not started:
                return  # whatever the app made of the refusal, the answer is the 413 below
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not refused or started:
                raise
        if refused and not started:
            await _too_large(limit)(scope, receive, send)
