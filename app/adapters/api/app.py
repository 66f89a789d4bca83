"""The application factory. Settings, engine and keys come from the container it is given
(or that it builds from settings), never from module globals."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from app import __version__
from app.adapters import web
from app.adapters.api.auth import Forbidden, Unauthorized
from app.adapters.api.idempotency import install_replay_handler
from app.adapters.api.introspect import api_routes
from app.adapters.api.middleware import RequestIdMiddleware
from app.adapters.api.problems import STATUS_BY_ERROR, install_problem_handlers, log, problem
from app.adapters.api.routers import (
    audit,
    blinding,
    health,
    lists,
    oauth,
    studies,
    subjects,
    supply,
)
from app.adapters.api.tokens import TokenService
from app.adapters.logs import install_request_id_factory
from app.bootstrap import Container, bootstrap
from app.domain.access import roles_allowed
from app.settings import Settings

STATUS_BY_ERROR.update({Unauthorized: 401, Forbidden: 403})


def _document_roles(app: FastAPI) -> None:
    """Each operation in the OpenAPI document names the roles the permission table allows."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, summary=app.summary, routes=app.routes
        )
        for info in api_routes(app):
            if info.action is None:
                continue
            roles = [r.value for r in roles_allowed(info.action)]
            operation = schema["paths"][info.path][info.method.lower()]
            operation["x-iwrs-action"] = info.action.value
            operation["x-iwrs-roles"] = roles
            operation["description"] = (
                operation.get("description", "") + f"\n\nAllowed roles: {', '.join(roles)}."
            ).strip()
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def create_app(container: Container | None = None, settings: Settings | None = None) -> FastAPI:
    install_request_id_factory()
    owned = container is None
    container = container or bootstrap(settings or Settings())

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        if owned:
            container.dispose()

    app = FastAPI(
        title="IWRS",
        version=__version__,
        summary="Randomization, blinding and drug supply for clinical trials",
        lifespan=lifespan,
    )
    app.state.container = container
    app.state.tokens = TokenService(
        container.keys.keyring,
        container.settings.token_issuer,
        container.settings.token_audience,
        container.settings.token_ttl_seconds,
    )
    install_problem_handlers(app)
    install_replay_handler(app)

    @app.exception_handler(OperationalError)
    async def _db_down(_request: Request, exc: OperationalError) -> JSONResponse:
        log.error("database unavailable", extra={"error": type(exc.orig).__name__})
        return problem(503, "database_unavailable", "the database is unavailable; retry later")

    @app.exception_handler(SQLAlchemyError)
    async def _db_error(_request: Request, exc: SQLAlchemyError) -> JSONResponse:
        log.exception("database error", exc_info=exc)
        return problem(500, "internal_error", "an unexpected error; quote the request id")

    for router in (
        health.router,
        oauth.router,
        studies.router,
        subjects.router,
        lists.router,
        supply.router,
        blinding.router,
        audit.router,
    ):
        app.include_router(router)
    if container.settings.simulation_clock_file is not None:
        from app.adapters.api.routers import simulation

        app.include_router(simulation.router)
    web.install(app)
    _document_roles(app)
    app.add_middleware(RequestIdMiddleware)
    return app
