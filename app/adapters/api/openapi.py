"""The public OpenAPI document: what EDC vendors generate their clients from.

Every operation has an operation id chosen on purpose (set with `operation_id=` on its route),
one declared tag, the roles the permission table allows, and the problems it may answer. A
route declares its problems with `@problems(SubjectNotFound, ...)`: domain error classes,
whose status comes from the one table in `problems.py`, or a code from `OTHER_PROBLEMS` for
answers rendered outside it. The declaration feeds both the operation's `responses` (each
status -> the `Problem` schema, as `application/problem+json`) and its description, so the
two cannot drift apart. Answers every route may give (no token, a foreign study, an invalid
request, a database down) are added here, not repeated on each route.

`info.version` is the contract's document version (the v1 contract plus additive changes);
the package's version is `info.x-service-version`.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, TypeVar

from fastapi import FastAPI, routing
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import BaseModel

from app import __version__
from app.adapters.api.auth import Forbidden, Unauthorized, route_action
from app.adapters.api.idempotency import idempotency_request
from app.adapters.api.problems import MEDIA_TYPE, PROBLEM_TYPE_BASE, STATUS_BY_ERROR
from app.adapters.db.idempotency import IdempotencyKeyReused
from app.domain.access import roles_allowed
from app.domain.errors import StudyNotFound

CONTRACT_VERSION = "1.1.0"  # the contract v1 (../shared/api-contract.md) plus additions
DESCRIPTION = """The integration contract of the IWRS: registration, randomization, dispensing,
supply and emergency unblinding for clinical trials.

- Authenticate with OAuth 2.0 client credentials at `POST /oauth/token`, then send
  `Authorization: Bearer <token>` on every call under `/api/v1`.
- Every POST accepts `Idempotency-Key`: the same key with the same body returns the first
  answer again.
- Errors are RFC 9457 `application/problem+json` with a stable `code`; each operation lists
  the codes it may answer. No answer names an arm or a kit type, except the unblinded ones
  (tag `blinding`), each to the one caller entitled to it.
- Times are RFC 3339 in UTC; `/api/v1` changes only by addition (`info.version` is the
  contract's version, `info.x-service-version` the running release)."""

TAGS: tuple[dict[str, str], ...] = (
    {"name": "operations", "description": "Liveness and readiness, without a token."},
    {
        "name": "auth",
        "description": "OAuth 2.0 client credentials (RFC 6749 4.4): a bearer token for /api/v1.",
    },
    {"name": "studies", "description": "Study definitions: arms by label, visits, sites, strata."},
    {
        "name": "subjects",
        "description": "Registration, randomization (never the arm), the blinded subject "
        "record, and the end of a subject's participation.",
    },
    {
        "name": "visits",
        "description": "Visits missed or held, unscheduled dispensations, a site's due visits.",
    },
    {
        "name": "supply",
        "description": "Dispensing, kits, inventory, shipments and temperature excursions; "
        "blinded (kit numbers and counts, never a kit type).",
    },
    {
        "name": "blinding",
        "description": "Emergency unblinding, the study lock and the unblinded exports: the "
        "only answers carrying an arm, each to the one caller entitled to it.",
    },
    {
        "name": "randomization lists",
        "description": "The unblinded statistician's list work: generate, QC, upload, extend.",
    },
    {
        "name": "enrolment",
        "description": "Enrolment status (never by arm), caps, a site's enrolment and activation.",
    },
    {"name": "audit", "description": "The study's audit trail, blinded as stored."},
    {
        "name": "simulation",
        "description": "The simulation clock; mounted only by `iwrs simulate`, never live.",
    },
)

# Problem codes rendered outside the domain error table: code -> (status, what it means).
OTHER_PROBLEMS: dict[str, tuple[int, str]] = {
    "bad_request": (400, "the body cannot be parsed (not JSON, say)"),
    "validation_error": (422, "the request does not match the operation's schema"),
    "invalid_value": (422, "a value in the request cannot be stored"),
    "unsupported_grant_type": (400, "only client_credentials is supported"),
    "invalid_request": (400, "client_id and client_secret are required"),
    "not_ready": (503, "the service is not ready (see `checks`)"),
    "database_unavailable": (503, "the database is unavailable; retry later"),
    "database_read_only": (503, "the database is read-only; retry later"),
    "storage_full": (503, "the database is out of space; retry later"),
    "key_unavailable": (503, "the blinding key is unavailable; see /ready"),
    "request_too_large": (413, "the body is larger than the operation accepts"),
    "request_headers_too_large": (431, "the request's headers are too many or too large"),
}

Answer = type[Exception] | str
_E = TypeVar("_E", bound=Callable[..., Any])

PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "type": "object",
    "description": "RFC 9457 problem details, with a stable machine `code` (never an arm "
    "or a kit type)",
    "required": ["type", "title", "status", "detail", "code"],
    "properties": {
        "type": {"type": "string", "format": "uri"},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string"},
        "code": {"type": "string", "description": "stable; listed on each operation"},
        "request_id": {"type": "string", "description": "quote it when reporting a problem"},
        "errors": {
            "type": "array",
            "description": "validation_error: where and why (never the values sent)",
            "items": {"$ref": "#/components/schemas/ValidationIssue"},
        },
        "errors_omitted": {
            "type": "integer",
            "description": "validation_error: how many issues are not listed (at most 20 are)",
        },
    },
    "additionalProperties": True,
    "examples": [
        {
            "type": PROBLEM_TYPE_BASE + "subject_already_randomized",
            "title": "Conflict",
            "status": 409,
            "detail": "subject 'FR01-001' is randomized already",
            "code": "subject_already_randomized",
            "request_id": "4f1c2a9e0b7d4c3e8a6f5d2b1c0e9a87",
        }
    ],
}
VALIDATION_ISSUE_SCHEMA: dict[str, Any] = {
    "title": "ValidationIssue",
    "type": "object",
    "required": ["loc", "msg"],
    "properties": {
        "loc": {"type": "array", "items": {"type": "string"}},
        "msg": {"type": "string"},
        "type": {"type": ["string", "null"]},
    },
    "examples": [{"loc": ["body", "weight_kg"], "msg": "Field required", "type": "missing"}],
}


def problems(*answers: Answer) -> Callable[[_E], _E]:
    """Declare the problems a route's endpoint may answer besides the common ones."""

    def declare(endpoint: _E) -> _E:
        endpoint.iwrs_problems = answers  # type: ignore[attr-defined]
        return endpoint

    return declare


def json_body(model: type[BaseModel]) -> Callable[[_E], _E]:
    """Publish `model` as the JSON body of a route that reads its body itself (to audit a
    refusal before validating, say): a required body referring to the model's schema."""

    def declare(endpoint: _E) -> _E:
        endpoint.iwrs_json_body = model  # type: ignore[attr-defined]
        return endpoint

    return declare


def _publish_body(
    operation: dict[str, Any], model: type[BaseModel], schemas: dict[str, Any]
) -> None:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(schema.pop("$defs", {}))
    schemas[model.__name__] = schema
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": ref}}}


@dataclass(frozen=True, slots=True)
class ProblemDoc:
    code: str
    status: int
    detail: str


def problem_doc(answer: Answer) -> ProblemDoc:
    """The code, status and meaning of a declared answer; KeyError for an unknown code."""
    if isinstance(answer, str):
        status, detail = OTHER_PROBLEMS[answer]
        return ProblemDoc(answer, status, detail)
    code = getattr(answer, "code", None)
    if not isinstance(code, str):
        raise KeyError(f"{answer.__name__} has no problem code")
    for cls in answer.__mro__:
        if cls in STATUS_BY_ERROR:
            doc = (answer.__doc__ or code).strip().splitlines()[0]
            return ProblemDoc(code, STATUS_BY_ERROR[cls], doc)
    raise KeyError(f"{answer.__name__} is not in the problem table")


def schema_routes(app: FastAPI) -> Iterator[tuple[str, str, APIRoute]]:
    """(path, method, route) of every operation in the document."""
    iterate = getattr(routing, "iter_route_contexts", None)
    entries = list(iterate(app.routes)) if iterate is not None else list(app.routes)
    for entry in entries:
        original = getattr(entry, "original_route", entry)
        if not isinstance(original, APIRoute) or not original.include_in_schema:
            continue
        path = str(getattr(entry, "path", original.path))
        methods: set[str] = getattr(entry, "methods", None) or original.methods or set()
        for method in sorted(methods):
            yield path, method.lower(), original


def _uses(dependant: Any, call: Callable[..., Any]) -> bool:
    return any(d.call is call or _uses(d, call) for d in dependant.dependencies)


def route_problems(path: str, route: APIRoute, operation: dict[str, Any]) -> list[ProblemDoc]:
    """Every problem an operation may answer: its declared ones, then the common ones."""
    declared: Sequence[Answer] = getattr(route.endpoint, "iwrs_problems", ())
    answers: list[Answer] = list(declared)
    if route_action(route.dependant) is not None:
        answers += [Unauthorized, Forbidden]
    if "{study}" in path:
        answers.append(StudyNotFound)
    if route.body_field is not None or hasattr(route.endpoint, "iwrs_json_body"):
        answers += ["bad_request", "request_too_large"]
    if "422" in operation.get("responses", {}):  # FastAPI validates parameters or a body
        answers += ["validation_error", "invalid_value"]
    if _uses(route.dependant, idempotency_request):
        answers.append(IdempotencyKeyReused)
    if path.startswith(("/api/", "/oauth/")):
        answers += ["database_unavailable", "key_unavailable"]
    if path.startswith("/api/") and "POST" in (route.methods or ()):
        answers += ["database_read_only", "storage_full"]
    found: dict[str, ProblemDoc] = {}
    for answer in answers:
        doc = problem_doc(answer)
        found.setdefault(doc.code, doc)
    return sorted(found.values(), key=lambda d: d.status)


def _problem_example(doc: ProblemDoc) -> dict[str, Any]:
    return {
        "type": PROBLEM_TYPE_BASE + doc.code,
        "title": HTTPStatus(doc.status).phrase,
        "status": doc.status,
        "detail": doc.detail,
        "code": doc.code,
        "request_id": "4f1c2a9e0b7d4c3e8a6f5d2b1c0e9a87",
    }


def _document_problems(operation: dict[str, Any], docs: list[ProblemDoc]) -> None:
    responses = operation.setdefault("responses", {})
    for status in [s for s in responses if s[0] in "45"]:
        del responses[status]  # FastAPI's own 422 body, which this service never sends
    by_status: dict[int, list[ProblemDoc]] = {}
    for doc in docs:
        by_status.setdefault(doc.status, []).append(doc)
    lines = []
    for status, group in sorted(by_status.items()):
        codes = ", ".join(f"`{d.code}`" for d in group)
        lines.append(f"- {status}: {codes}")
        responses[str(status)] = {
            "description": f"{HTTPStatus(status).phrase}: {codes}",
            "content": {
                MEDIA_TYPE: {
                    "schema": {"$ref": "#/components/schemas/Problem"},
                    "example": _problem_example(group[0]),
                }
            },
        }
    if lines:
        text = "Problems (`application/problem+json`, by `code`):\n" + "\n".join(lines)
        operation["description"] = (operation.get("description", "") + "\n\n" + text).strip()
    operation["x-iwrs-problems"] = [{"code": d.code, "status": d.status} for d in docs]


def _plain_optional_body(operation: dict[str, Any]) -> None:
    """An optional JSON body is published as its model, not required (FastAPI writes
    `anyOf: [model, null]` titled "Body", which generators turn into a union type)."""
    body = operation.get("requestBody")
    if not body:
        return
    for media in body.get("content", {}).values():
        schema = media.get("schema", {})
        refs = [s for s in schema.get("anyOf", []) if "$ref" in s]
        if len(refs) == 1 and {"type": "null"} in schema["anyOf"]:
            media["schema"] = refs[0]


def _models(annotation: Any, seen: dict[str, type[BaseModel]]) -> None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        if annotation.__name__ in seen:
            return
        seen[annotation.__name__] = annotation
        for field in annotation.model_fields.values():
            _models(field.annotation, seen)
    for arg in typing.get_args(annotation):
        _models(arg, seen)


def _restore_examples(app: FastAPI, schemas: dict[str, Any]) -> None:
    """Put back the models' examples as written: FastAPI drops every null from the document
    (`exclude_none`), examples included, which leaves them invalid for their schemas."""
    models: dict[str, type[BaseModel]] = {}
    for _path, _method, route in schema_routes(app):
        _models(route.response_model, models)
        if route.body_field is not None:
            _models(route.body_field.field_info.annotation, models)
        _models(getattr(route.endpoint, "iwrs_json_body", None), models)
    for name, model in models.items():
        extra = model.model_config.get("json_schema_extra")
        if name in schemas and isinstance(extra, dict) and "examples" in extra:
            schemas[name]["examples"] = extra["examples"]


def build_document(app: FastAPI) -> dict[str, Any]:
    document = get_openapi(
        title=app.title,
        version=CONTRACT_VERSION,
        summary=app.summary,
        description=app.description,
        routes=app.routes,
    )
    document["info"]["x-service-version"] = __version__
    document["info"]["description"] = DESCRIPTION
    document["info"]["contact"] = {"name": "IWRS", "url": "https://iwrs.dev"}
    document["servers"] = [{"url": "/", "description": "this service"}]
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas["Problem"] = PROBLEM_SCHEMA
    schemas["ValidationIssue"] = VALIDATION_ISSUE_SCHEMA
    used_tags: set[str] = set()
    for path, method, route in schema_routes(app):
        operation = document["paths"][path][method]
        used_tags.update(operation.get("tags", []))
        action = route_action(route.dependant)
        if action is not None:
            roles = [r.value for r in roles_allowed(action)]
            operation["x-iwrs-action"] = action.value
            operation["x-iwrs-roles"] = roles
            operation["description"] = (
                operation.get("description", "") + f"\n\nAllowed roles: {', '.join(roles)}."
            ).strip()
        body_model = getattr(route.endpoint, "iwrs_json_body", None)
        if body_model is not None:
            _publish_body(operation, body_model, schemas)
        _plain_optional_body(operation)
        _document_problems(operation, route_problems(path, route, operation))
    _restore_examples(app, schemas)
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    document["tags"] = [dict(tag) for tag in TAGS if tag["name"] in used_tags]
    return document


def install_openapi(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_document(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
