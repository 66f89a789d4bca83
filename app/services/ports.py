"""The ports the use cases need; the adapters implement them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Protocol, Self

from app.domain.audit import Actor, AuditEvent, AuditRecord
from app.domain.clients import Client, ThrottleState
from app.domain.randomization import Slot
from app.domain.study import Study
from app.domain.subjects import Subject


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

    def mode(self, slug: str) -> str:
        """The study's mode: 'live' or 'uat' (test lists and test subjects)."""

    def set_mode(self, slug: str, mode: str) -> None: ...

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


@dataclass(frozen=True, slots=True)
class DispensationView:
    """A visit's dispensing as a blinded reader sees it: kit numbers, never types."""

    visit: str
    dispensed_at: datetime
    weight_kg: str
    kit_numbers: tuple[str, ...]


class SubjectRepository(Protocol):
    def add(
        self, study: str, subject_id: str, site: str, strata: Mapping[str, str], mode: str
    ) -> Subject: ...

    def get(
        self,
        study: str,
        subject_id: str,
        *,
        sites: frozenset[str] | None = None,
        for_update: bool = False,
    ) -> Subject | None:
        """The subject, or None when absent or outside `sites` (None: every site)."""

    def mark_randomized(self, subject: Subject, number: int, at: datetime) -> Subject: ...

    def set_unblinded(self, subject: Subject) -> None: ...

    def dispensations(self, subject: Subject) -> list[DispensationView]: ...


@dataclass(frozen=True, slots=True)
class ListInfo:
    id: int
    study: str
    mode: str
    version: int
    method: str


@dataclass(frozen=True, slots=True)
class StratumPlan:
    key: str
    site: str | None
    levels: Mapping[str, str]
    slots: Sequence[tuple[Slot, int]]  # each slot with its randomization number


@dataclass(frozen=True, slots=True)
class StratumState:
    id: int
    key: str
    next_sequence: int
    length: int
    low_warned: bool


class ListRepository(Protocol):
    def active(self, study: str, mode: str) -> ListInfo | None: ...

    def create(
        self,
        study: str,
        mode: str,
        method: str,
        seed: bytes | None,
        strata: Sequence[StratumPlan],
        generated_by: str,
    ) -> ListInfo: ...

    def supersede(self, list_id: int) -> None: ...

    def allocated_count(self, list_id: int) -> int: ...

    def lock_stratum(self, list_id: int, key: str) -> StratumState | None: ...

    def slot(self, info: ListInfo, stratum: StratumState, sequence: int) -> tuple[Slot, int]:
        """The slot (its arm opened) and its randomization number."""

    def advance(self, stratum: StratumState, next_sequence: int, low_warned: bool) -> None: ...

    def add_allocation(
        self,
        subject: Subject,
        info: ListInfo,
        stratum: StratumState,
        sequence: int,
        number: int,
        arm: str,
        trace: Mapping[str, Any] | None,
        at: datetime,
    ) -> None: ...

    def arm_of(self, subject: Subject) -> str | None: ...

    def seed(self, info: ListInfo) -> bytes | None: ...

    def slots(self, info: ListInfo) -> dict[str, list[tuple[Slot, int]]]: ...

    def strata(self, info: ListInfo) -> list[StratumState]: ...

    def used_numbers(self, info: ListInfo) -> set[int]: ...

    def extension_count(self, info: ListInfo, key: str) -> int: ...

    def append_slots(self, info: ListInfo, plan: StratumPlan) -> None:
        """Add slots after a stratum's last (creating the stratum when it has none)."""

    def allocations(self, study: str, mode: str) -> list[tuple[Subject, str, int]]:
        """Every allocated subject of the study and mode with its arm and number."""


class SupplyRepository(Protocol):
    """Filled by the supply use cases (app.services.supply)."""


class BlindingRepository(Protocol):
    """Filled by the blinding use cases (app.services.blinding)."""


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

    @property
    def subjects(self) -> SubjectRepository: ...

    @property
    def lists(self) -> ListRepository: ...

    @property
    def supply(self) -> SupplyRepository: ...

    @property
    def blinding(self) -> BlindingRepository: ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def record(self, event: AuditEvent) -> None: ...

    def commit(self, result: object | None = None) -> None:
        """Commit; `result` is what an idempotent request answers with on a retry."""

    def rollback(self) -> None: ...
