"""The unit of work: one session, one transaction; audit events written before commit."""

from __future__ import annotations

from types import TracebackType
from typing import Self

from sqlalchemy.orm import Session, sessionmaker

from app.adapters.clock import SystemClock
from app.adapters.db import hot
from app.adapters.db.access_repos import (
    SqlAuditReader,
    SqlClientRepository,
    SqlThrottleRepository,
)
from app.adapters.db.audit import append_events
from app.adapters.db.blinding_repos import SqlBlindingRepository
from app.adapters.db.caller import caller_check
from app.adapters.db.enrolment_repos import SqlEnrolmentRepository
from app.adapters.db.idempotency import IdempotencyGuard, SqlIdempotencyRecords
from app.adapters.db.keystore import KeyService
from app.adapters.db.randomization_repos import SqlListRepository, SqlSubjectRepository
from app.adapters.db.repositories import SqlStudyRepository
from app.adapters.db.resupply_repos import SqlResupplyRepository
from app.adapters.db.supply_repos import SqlSupplyRepository
from app.adapters.db.users_repos import SqlUserRepository, SqlWebSessionRepository
from app.adapters.db.visit_repos import SqlVisitRepository
from app.domain.audit import Actor, AuditEvent
from app.services.ports import Clock


class SqlUnitOfWork:
    studies: SqlStudyRepository
    clients: SqlClientRepository
    throttle: SqlThrottleRepository
    audit: SqlAuditReader
    subjects: SqlSubjectRepository
    lists: SqlListRepository
    supply: SqlSupplyRepository
    resupply: SqlResupplyRepository
    blinding: SqlBlindingRepository
    enrolment: SqlEnrolmentRepository
    users: SqlUserRepository
    web_sessions: SqlWebSessionRepository
    visits: SqlVisitRepository
    idempotency_records: SqlIdempotencyRecords

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        keys: KeyService,
        actor: Actor,
        request_id: str | None = None,
        idempotency: IdempotencyGuard | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._session_factory = session_factory
        self._keys = keys
        self.actor = actor
        self.request_id = request_id
        self._events: list[AuditEvent] = []
        self._idempotency = idempotency
        self.clock: Clock = clock or SystemClock()

    def __enter__(self) -> Self:
        self.session = self._session_factory()
        self._events = []
        self._open_repositories()
        check = caller_check.get()
        if check is None and self._idempotency is None:
            return self
        try:
            # The API caller first (see app.adapters.db.caller), then a replay, if any.
            if check is not None:
                # Verified with the transaction's first statement, before its rows are used.
                self.clients.check_still_valid(check.client_id, check.secret_version)
            if self._idempotency is not None:
                self._idempotency.begin(self.session, self.clock.now())
        except BaseException:
            self.session.rollback()
            self.session.close()
            raise
        return self

    def _open_repositories(self) -> None:
        """Repositories for the session's transaction (some remember what it has locked, so a
        rolled-back transaction's are replaced: its locks are gone)."""
        self.studies = SqlStudyRepository(self.session, self._keys)
        self.clients = SqlClientRepository(self.session)
        self.throttle = SqlThrottleRepository(self.session)
        self.audit = SqlAuditReader(self.session)
        self.subjects = SqlSubjectRepository(self.session, self._keys)
        self.lists = SqlListRepository(self.session, self._keys)
        self.supply = SqlSupplyRepository(self.session, self._keys)
        self.resupply = SqlResupplyRepository(self.session)
        self.blinding = SqlBlindingRepository(self.session, self._keys)
        self.enrolment = SqlEnrolmentRepository(self.session)
        self.users = SqlUserRepository(self.session, self._keys)
        self.web_sessions = SqlWebSessionRepository(self.session)
        self.visits = SqlVisitRepository(self.session)
        self.idempotency_records = SqlIdempotencyRecords(self.session)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc_type is None:
                # A unit of work left without commit still answers only a valid caller.
                hot.flush(self.session)
        finally:
            self._events = []
            self.session.rollback()
            self.session.close()

    def record(self, event: AuditEvent) -> None:
        self._events.append(event)

    def commit(self, result: object | None = None) -> None:
        """Write the audit events (and the idempotent response for `result`), then commit."""
        if self._idempotency is not None and result is not None:
            self._idempotency.finish(self.session, result)
        append_events(self.session, self._events, self.actor, self.request_id)
        self._events = []
        self.session.commit()
        self._keys.committed(self.session)

    def rollback(self) -> None:
        """Drop the transaction's work; the unit of work may go on in a new transaction."""
        self._events = []
        self.session.rollback()
        self._open_repositories()
