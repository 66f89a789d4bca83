"""Liveness and readiness: the database answers, is migrated, and the key opens."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from app import __version__
from app.adapters.api.deps import get_container
from app.adapters.api.openapi import problems
from app.adapters.api.problems import problem
from app.adapters.api.routing import ThreadPoolRoute
from app.adapters.api.schemas import Health, Readiness
from app.adapters.crypto.envelope import CannotOpen
from app.adapters.crypto.keyring import KeyUnavailable
from app.adapters.db.migrate import current_revision, head_revision
from app.adapters.db.models import StudyRow
from app.bootstrap import Container

router = APIRouter(tags=["operations"], route_class=ThreadPoolRoute)
log = logging.getLogger("iwrs.ready")


@router.get(
    "/health",
    response_model=Health,
    operation_id="get_health",
    summary="Liveness",
    description="The process answers; says nothing of the database (see /ready).",
)
def health() -> Health:
    return Health(status="ok", version=__version__)


@router.get(
    "/ready",
    response_model=Readiness,
    operation_id="get_readiness",
    summary="Readiness: the database is reachable and migrated, the keys open",
)
@problems("not_ready")
def ready(container: Annotated[Container, Depends(get_container)]) -> Readiness | JSONResponse:
    checks: dict[str, str] = {}
    try:
        with container.session_factory() as session:
            conn = session.connection()
            conn.execute(text("SELECT 1"))
            at = current_revision(conn)
        checks["database"] = "ok" if at == head_revision() else "not migrated: run iwrs db upgrade"
    except SQLAlchemyError as exc:
        checks["database"] = f"unreachable ({type(exc).__name__})"
    try:
        container.keys.keyring()
        checks["key"] = "ok"
        if checks["database"] == "ok":
            with container.session_factory() as session:
                for row in session.query(StudyRow).all():
                    container.keys.cipher(session, row.id, row.slug)
            checks["study_keys"] = "ok"
    except (KeyUnavailable, CannotOpen) as exc:
        log.error("key check failed: %s", exc)
        checks["key"] = "unavailable: see the service log"
    if all(v == "ok" for v in checks.values()):
        return Readiness(status="ready", checks=checks)
    log.warning("not ready", extra={"checks": checks})
    return problem(503, "not_ready", "the service is not ready", checks=checks)
