"""The application factory. Settings, engine and keys come from the container it is given
(or that it builds from settings), never from module globals."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from anyio import to_thread
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, OperationalError, SQLAlchemyError

from app.adapters import web
from app.adapters.api.auth import CALLERS_CACHE_SIZE, Forbidden, Unauthorized
from app.adapters.api.deprecation import install_deprecations
from app.adapters.api.idempotency import install_replay_handler
from app.adapters.api.middleware import Limits, LimitsMiddleware, RequestIdMiddleware
from app.adapters.api.openapi import CONTRACT_VERSION, TAGS, install_openapi
from app.adapters.api.problems import STATUS_BY_ERROR, install_problem_handlers, log, problem
from app.adapters.api.routers import (
    audit,
    blinding,
    enrolment,
    health,
    lists,
    oauth,
    studies,
    subjects,
    supply,
    visits,
)
from app.adapters.api.tokens import TokenService
from app.adapters.cache import BoundedCache
from app.adapters.logs import install_request_id_factory
from app.bootstrap import Container, bootstrap
from app.services.housekeeping import housekeeping as run_housekeeping
from app.settings import Settings

STATUS_BY_ERROR.update({Unauthorized: 401, Forbidden: 403})


def _storage_refusal(exc: SQLAlchemyError) -> tuple[str, str] | None:
    """A database that cannot take writes (read-only, or its disk full) is an operational
    state to report clearly (503, a stable code), not an internal error."""
    orig = getattr(exc, "orig", None)
    sqlstate = getattr(orig, "sqlstate", None)  # PostgreSQL (psycopg)
    sqlite_code = (getattr(orig, "sqlite_errorcode", None) or 0) & 0xFF  # SQLite primary code
    if sqlstate == "25006" or sqlite_code == 8:  # read_only_sql_transaction, SQLITE_READONLY
        return "database_read_only", "the database is read-only; retry later"
    if (sqlstate or "").startswith("53") or sqlite_code == 13:  # out of resources, SQLITE_FULL
        return "storage_full", "the database is out of space; retry later"
    return None


def create_app(container: Container | None = None, settings: Settings | None = None) -> FastAPI:
    install_request_id_factory()
    owned = container is None
    container = container or bootstrap(settings or Settings())

    async def housekeeping(every: float) -> None:
        """Mark expired kits and run the day's resupply review, every `every` seconds, for as
        long as we serve (the review itself runs once a UTC date, app.services.resupply)."""
        actor = container.system_actor("housekeeping")
        retention = timedelta(seconds=container.settings.idempotency_retention_seconds)
        while True:
            await asyncio.sleep(every)
            try:
                done = await to_thread.run_sync(
                    run_housekeeping, lambda: container.uow(actor), retention
                )
            except Exception:
                log.exception("housekeeping failed; retried at the next run")
                continue
            for slug, places in done.expired.items():
                log.info(
                    "kits expired",
                    extra={"study": slug, "kits": sum(len(n) for n in places.values())},
                )
            for slug, shipments in done.shipped.items():
                log.info("resupply shipped", extra={"study": slug, "shipments": len(shipments)})
            if any(done.purged.values()):
                log.info("expired records purged", extra=done.purged)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        to_thread.current_default_thread_limiter().total_tokens = container.settings.worker_threads
        every = container.settings.housekeeping_seconds
        task = asyncio.create_task(housekeeping(every)) if every > 0 else None
        yield
        if task is not None:
            task.cancel()
        if owned:
            container.dispose()

    app = FastAPI(
        title="IWRS",
        version=CONTRACT_VERSION,
        summary="Randomization, blinding and drug supply for clinical trials",
        openapi_tags=list(TAGS),
        lifespan=lifespan,
    )
    app.state.container = container
    app.state.tokens = TokenService(
        container.keys.keyring,
        container.settings.token_issuer,
        container.settings.token_audience,
        container.settings.token_ttl_seconds,
    )
    app.state.callers = BoundedCache(CALLERS_CACHE_SIZE)
    install_problem_handlers(app)
    install_replay_handler(app)

    @app.exception_handler(OperationalError)
    async def _db_down(_request: Request, exc: OperationalError) -> JSONResponse:
        refusal = _storage_refusal(exc)
        if refusal is not None:
            log.error("database refused a write", extra={"error": refusal[0]})
            return problem(503, *refusal)
        log.error("database unavailable", extra={"error": type(exc.orig).__name__})
        return problem(503, "database_unavailable", "the database is unavailable; retry later")

    @app.exception_handler(DataError)
    async def _bad_value(_request: Request, exc: DataError) -> JSONResponse:
        # A value the database cannot store or compare (a NUL character, a number out of
        # range) got past validation: the request is at fault, not the service.
        log.warning("value refused by the database", extra={"error": type(exc.orig).__name__})
        return problem(422, "invalid_value", "a value in the request cannot be stored")

    @app.exception_handler(SQLAlchemyError)
    async def _db_error(_request: Request, exc: SQLAlchemyError) -> JSONResponse:
        refusal = _storage_refusal(exc)
        if refusal is not None:
            log.error("database refused a write", extra={"error": refusal[0]})
            return problem(503, *refusal)
        log.exception("database error", exc_info=exc)
        return problem(500, "internal_error", "an unexpected error; quote the request id")

    for router in (
        health.router,
        oauth.router,
        studies.router,
        subjects.router,
        visits.router,
        lists.router,
        supply.router,
        blinding.router,
        enrolment.router,
        audit.router,
    ):
        app.include_router(router)
    if container.settings.simulation_clock_file is not None:
        from app.adapters.api.routers import simulation

        app.include_router(simulation.router)
    web.install(app)
    install_openapi(app)
    install_deprecations(app)  # after install_openapi: it wraps the document's builder
    app.add_middleware(LimitsMiddleware, limits=Limits.from_settings(container.settings))
    app.add_middleware(RequestIdMiddleware)  # outermost: the refusals carry the request id
    return app
