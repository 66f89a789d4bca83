"""The API's routes as (method, path, action): for the OpenAPI document and the tests.

FastAPI 0.12x+ keeps included routers as wrappers; `iter_route_contexts` flattens them
(older releases list APIRoutes directly, which the fallback covers).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from fastapi import FastAPI, routing
from fastapi.routing import APIRoute

from app.adapters.api.auth import route_action
from app.domain.access import Action


@dataclass(frozen=True, slots=True)
class RouteInfo:
    method: str
    path: str
    action: Action | None


def api_routes(app: FastAPI) -> Iterator[RouteInfo]:
    iterate = getattr(routing, "iter_route_contexts", None)
    entries = list(iterate(app.routes)) if iterate is not None else list(app.routes)
    for entry in entries:
        original = getattr(entry, "original_route", entry)
        if not isinstance(original, APIRoute) or not original.include_in_schema:
            continue  # the web pages (/ui) are not API routes
        path = str(getattr(entry, "path", original.path))
        action = route_action(original.dependant)
        methods: set[str] = getattr(entry, "methods", None) or original.methods or set()
        for method in sorted(methods):
            yield RouteInfo(method, path, action)
