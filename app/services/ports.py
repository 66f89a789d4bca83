"""The ports the use cases need; the adapters implement them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Protocol, Self

from app.domain.audit import Actor, AuditEvent, AuditRecord
from app.domain.clients import Client, ThrottleState
from app.domain.study import Study


@dataclass(frozen=True, slots=True)
class StoredStudy:
    slug: str
    version: int
    sha256: str
    study: Study
    document: Mapping[str, Any]


class StudyRepository(Protocol):
    def get(self, slug: str, *, for_update: bool = False) -> StoredStudy | None: ...

    def list(self) -> list[StoredStudy]: ...

    def exists(self, slug: str) -> bool: ...

    def save(
        self, study: Study, document: Mapping[str, Any], sha256: str, version: int
    ) -> None: ...

    def randomized_count(self, slug: str) -> int: ...

    def sites_with_subjects(self, slug: str) -> set[str]: ...


class ClientRepository(Protocol):
    def add(self, client: Client) -> None: ...

    def get(self, client_id: str, *, for_update: bool = False) -> Client | None: ...

    def get_by_name(self, name: str) -> Client | None: ...

    def list(self) -> list[Client]: ...

    def save(self, client: Client) -> None: ...


class ThrottleRepository(Protocol):
    def get(self, key: str, *, for_update: bool = False) -> ThrottleState | None: ...

    def save(self, state: ThrottleState) -> None: ...

    def delete(self, key: str) -> None: ...


@dataclass(frozen=True, slots=True)
class AuditQuery:
    chain: str
    subject_id: str | None = None
    action: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    after_seq: int = 0
    limit: int = 100


class AuditReader(Protocol):
    def page(self, query: AuditQuery) -> list[AuditRecord]: ...

    def head(self, chain: str) -> tuple[int, str] | None: ...


class SecretHasher(Protocol):
    def hash(self, secret: str) -> str: ...

    def verify(self, hashed: str, secret: str) -> bool: ...

    def verify_dummy(self, secret: str) -> None:
        """Spend the time of one verification, so unknown ids answer as slowly."""


class UnitOfWork(Protocol):
    """One database transaction; audit events recorded in it are written before commit."""

    actor: Actor

    @property
    def studies(self) -> StudyRepository: ...

    @property
    def clients(self) -> ClientRepository: ...

    @property
    def throttle(self) -> ThrottleRepository: ...

    @property
    def audit(self) -> AuditReader: ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def record(self, event: AuditEvent) -> None: ...

    def commit(self) -> None: ...

    def rollback(self) -> None: ...
