"""The ports the use cases need; the adapters implement them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol, Self

from app.domain.audit import Actor, AuditEvent
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

    def save(
        self, study: Study, document: Mapping[str, Any], sha256: str, version: int
    ) -> None: ...

    def randomized_count(self, slug: str) -> int: ...

    def sites_with_subjects(self, slug: str) -> set[str]: ...


class UnitOfWork(Protocol):
    """One database transaction; audit events recorded in it are written before commit."""

    actor: Actor

    @property
    def studies(self) -> StudyRepository: ...

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
