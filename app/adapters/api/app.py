"""The application factory. Settings, engine and keys come from the container it is given
(or that it builds from settings), never from module globals."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from app import __version__
from app.adapters.api.middleware import RequestIdMiddleware
from app.adapters.api.problems import install_problem_handlers, log, problem
from app.adapters.api.routers import health, studies
from app.adapters.logs import install_request_id_factory
from app.bootstrap import Container, bootstrap
from app.settings import Settings


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
    install_problem_handlers(app)

    @app.exception_handler(OperationalError)
    async def _db_down(_request: Request, exc: OperationalError) -> JSONResponse:
        log.error("database unavailable", extra={"error": type(exc.orig).__name__})
        return problem(503, "database_unavailable", "the database is unavailable; retry later")

    @app.exception_handler(SQLAlchemyError)
    async def _db_error(_request: Request, exc: SQLAlchemyError) -> JSONResponse:
        log.exception("database error", exc_info=exc)
        return problem(500, "internal_error", "an unexpected error; quote the request id")

    app.include_router(health.router)
    app.include_router(studies.router)
    app.add_middleware(RequestIdMiddleware)
    return app
