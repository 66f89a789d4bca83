"""RFC 9457 problem+json: one table from error code to HTTP status, one renderer.

A 4xx never carries an arm or a kit type; a 5xx carries only the request id.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from http import HTTPStatus
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.adapters.api import ratelimit
from app.adapters.crypto.envelope import CannotOpen
from app.adapters.crypto.keyring import KeyUnavailable
from app.adapters.db.idempotency import IdempotencyKeyReused
from app.adapters.logs import request_id_var
from app.domain import clients, dispensing, enrolment, errors, kits, subjects
from app.services import blinding, lists, randomization, supply, visits

log = logging.getLogger("iwrs.api")

PROBLEM_TYPE_BASE = "https://iwrs.dev/problems/"
MEDIA_TYPE = "application/problem+json"

# Domain error class -> HTTP status. Subclasses inherit their parent's status.
STATUS_BY_ERROR: dict[type[Exception], int] = {
    clients.AuthenticationFailed: 401,
    clients.CallerNoLongerValid: 401,
    clients.Throttled: 429,
    clients.InvalidGrant: 422,
    IdempotencyKeyReused: 422,
    randomization.InvalidSite: 422,
    lists.ListUploadRejected: 422,
    lists.UnknownStratum: 422,
    randomization.SiteForbidden: 403,
    blinding.TokenNotFresh: 401,
    blinding.BlindingForbidden: 403,
    blinding.InvalidRequest: 422,
    subjects.InvalidStratum: 422,
    enrolment.InvalidEnrolmentCap: 422,
    enrolment.ReasonRequired: 422,
    subjects.InvalidDiscontinuationReason: 422,
    subjects.InvalidScreenFailureReason: 422,
    subjects.RescreenOfNotFound: 422,
    subjects.EligibilityNotConfirmed: 422,
    subjects.StratumUnchanged: 422,
    subjects.InvalidCorrection: 422,
    dispensing.WeightOutOfRange: 422,
    kits.InvalidKitNumber: 422,
    supply.KitNotInShipment: 422,
    supply.InvalidSupplyRequest: 422,
    visits.InvalidVisitReason: 422,
    errors.NotFound: 404,
    errors.InvalidStudyDefinition: 422,
    errors.AllocationChangeRefused: 409,
    errors.Conflict: 409,
    errors.DomainError: 400,
}

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "request_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
    431: "request_headers_too_large",
    500: "internal_error",
    503: "service_unavailable",
}


# An error body echoes a bounded part of the request: at most this many issues, each text
# cut to an excerpt, and the count of those left out (a huge body must not make a huge answer).
MAX_ISSUES = 20
MAX_EXCERPT = 100
MAX_LOC_PARTS = 8
T = TypeVar("T")


def excerpt(value: object, limit: int = MAX_EXCERPT) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _bounded(name: str, issues: Sequence[T], render: Callable[[T], Any]) -> dict[str, Any]:
    """`name`: the first MAX_ISSUES issues rendered; `name_omitted`: how many more there are."""
    found: dict[str, Any] = {name: [render(i) for i in issues[:MAX_ISSUES]]}
    if len(issues) > MAX_ISSUES:
        found[f"{name}_omitted"] = len(issues) - MAX_ISSUES
    return found


def _validation_issue(error: Mapping[str, Any]) -> dict[str, Any]:
    loc = [excerpt(p) for p in error.get("loc", ())]
    if len(loc) > MAX_LOC_PARTS:
        loc = [*loc[:MAX_LOC_PARTS], "\u2026"]
    return {
        "loc": loc,
        "msg": excerpt(error.get("msg", ""), 2 * MAX_EXCERPT),
        "type": error.get("type"),
    }


def problem(
    status: int,
    code: str,
    detail: str,
    *,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + code,
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "code": code,
    }
    rid = request_id_var.get()
    if rid:
        body["request_id"] = rid
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def status_for(exc: errors.DomainError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls]
    return 400


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(errors.DomainError)
    async def _domain(_request: Request, exc: errors.DomainError) -> JSONResponse:
        extra: dict[str, Any] = {}
        headers: dict[str, str] = {}
        status = status_for(exc)
        problems = getattr(exc, "problems", None)
        if isinstance(problems, list):
            extra |= _bounded("problems", problems, lambda p: excerpt(p, 2 * MAX_EXCERPT))
        if isinstance(exc, clients.Throttled):
            headers["Retry-After"] = str(exc.retry_after)
            headers.update(ratelimit.locked(exc.retry_after))
        if status == 401:
            headers["WWW-Authenticate"] = 'Bearer realm="iwrs", error="invalid_token"'
        return problem(status, exc.code, exc.detail, headers=headers or None, **extra)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # Echo where and why, never the submitted values (they may hold secrets), and only a
        # bounded excerpt of the where (an unknown key is the client's text).
        errors = exc.errors()
        found = _bounded("errors", errors, _validation_issue)
        detail = "the request is not valid"
        if len(errors) > MAX_ISSUES:
            detail += f" ({len(errors)} issues; the first {MAX_ISSUES} are listed)"
        return problem(422, "validation_error", detail, **found)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, "http_error")
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        return problem(exc.status_code, code, detail, headers=getattr(exc, "headers", None))

    @app.exception_handler(KeyUnavailable)
    @app.exception_handler(CannotOpen)
    async def _keys(_request: Request, exc: Exception) -> JSONResponse:
        log.error("key unavailable", extra={"error": type(exc).__name__})
        return problem(503, "key_unavailable", "the blinding key is unavailable; see /ready")
