"""Retiring an operation of /api/v1 (docs/api-versioning.md): it keeps working until its
Sunset date, and every answer it gives says so.

An operation is declared here by method and path template, with the instant it was
deprecated, its Sunset instant and, where one exists, the operation that replaces it. Each
of its responses, errors included, then carries

    Deprecation: @1798761600                                  (RFC 9745, a Date: epoch s)
    Sunset: Fri, 31 Dec 2027 00:00:00 GMT                      (RFC 8594, an HTTP-date)
    Link: <https://iwrs.dev/docs/api-versioning>; rel="deprecation",
          <.../replacement>; rel="successor-version"

and the OpenAPI document marks it `deprecated: true`. Nothing is deprecated today.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

from fastapi import FastAPI, routing
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

POLICY_URL = "https://iwrs.dev/docs/api-versioning"
Field = tuple[bytes, bytes]
MIN_NOTICE = timedelta(days=180)  # the policy's promise between Deprecation and Sunset


@dataclass(frozen=True, slots=True)
class Deprecated:
    deprecated_at: datetime  # UTC
    sunset_at: datetime  # UTC; at least MIN_NOTICE after deprecated_at
    replacement: str | None = None  # a path (or URL) of the operation to use instead

    def headers(self, policy_url: str = POLICY_URL) -> list[Field]:
        links = [f'<{policy_url}>; rel="deprecation"']
        if self.replacement:
            links.append(f'<{self.replacement}>; rel="successor-version"')
        return [
            (b"deprecation", f"@{int(self.deprecated_at.timestamp())}".encode()),
            (b"sunset", format_datetime(self.sunset_at.astimezone(UTC), usegmt=True).encode()),
            (b"link", ", ".join(links).encode()),
        ]


# (method, path template) -> its deprecation. Kept empty until an operation is retired.
DEPRECATED: dict[tuple[str, str], Deprecated] = {}


class DeprecationMiddleware:
    """Adds the fields to every response of a declared operation. FastAPI puts the matched
    route in the scope before the endpoint answers; it is looked up by identity, since a
    route included under a prefix keeps its own path."""

    def __init__(self, app: ASGIApp, fields: Mapping[tuple[str, int], list[Field]]) -> None:
        self.app = app
        self.fields = fields

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_fields(message: Message) -> None:
            if message["type"] == "http.response.start":
                fields = self.fields.get((scope["method"], id(scope.get("route"))))
                if fields:
                    message["headers"] = [*message.get("headers", []), *fields]
            await send(message)

        await self.app(scope, receive, send_with_fields)


def _operations(app: FastAPI) -> dict[tuple[str, str], APIRoute]:
    """(method, path as served) -> the route answering it."""
    iterate = getattr(routing, "iter_route_contexts", None)  # FastAPI 0.12x+ wraps routers
    entries = list(iterate(app.routes)) if iterate is not None else list(app.routes)
    found: dict[tuple[str, str], APIRoute] = {}
    for entry in entries:
        original = getattr(entry, "original_route", entry)
        if isinstance(original, APIRoute):
            path = str(getattr(entry, "path", original.path))
            for method in getattr(entry, "methods", None) or original.methods or set():
                found[(method, path)] = original
    return found


def install_deprecations(
    app: FastAPI,
    table: Mapping[tuple[str, str], Deprecated] = DEPRECATED,
    policy_url: str = POLICY_URL,
) -> None:
    """Mark the declared operations deprecated and add the middleware (none when nothing is
    deprecated). A declaration naming no operation of the app is refused: a typo must not
    silently leave a retired operation unannounced."""
    if not table:
        return
    routes = _operations(app)
    unknown = sorted(f"{m} {p}" for m, p in table if (m, p) not in routes)
    if unknown:
        raise ValueError(f"deprecated operations not in the app: {', '.join(unknown)}")
    fields: dict[tuple[str, int], list[Field]] = {}
    for (method, path), entry in table.items():
        if entry.sunset_at - entry.deprecated_at < MIN_NOTICE:
            raise ValueError(
                f"{method} {path}: the sunset comes less than {MIN_NOTICE.days} days "
                "after the deprecation"
            )
        route = routes[(method, path)]
        fields[(method, id(route))] = entry.headers(policy_url)
    app.add_middleware(DeprecationMiddleware, fields=fields)
    app.openapi_schema = None
    base_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = base_openapi()
            for method, path in table:
                schema["paths"][path][method.lower()]["deprecated"] = True
        return app.openapi_schema or schema

    app.openapi = openapi  # type: ignore[method-assign]
