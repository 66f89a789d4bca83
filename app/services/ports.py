"""The ports the use cases need; the adapters implement them."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from types import TracebackType
from typing import Any, Protocol, Self

from app.domain.audit import Actor, AuditEvent, AuditRecord
from app.domain.clients import Client, ThrottleState
from app.domain.dispensing import KitCandidate
from app.domain.enrolment import CapScope, Enrollee, EnrolmentCap
from app.domain.kits import KitStatus, Lot
from app.domain.randomization import Slot
from app.domain.returns import HandedOut
from app.domain.schedule import VisitKind
from app.domain.study import Study
from app.domain.subjects import Subject, SubjectStatus


@dataclass(frozen=True, slots=True)
class StoredStudy:
    slug: str
    version: int
    sha256: str
    study: Study
    document: Mapping[str, Any]


class StudyRepository(Protocol):
    def get(self, slug: str, *, for_update: bool = False, hold: bool = False) -> StoredStudy | None:
        """The study; `hold` also share-locks its row until commit (see ensure_not_locked),
        `for_update` locks it for a change."""
        ...

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

    def purge(self, now: datetime, counted_since: datetime) -> int:
        """Delete the records that hold nothing any more (a lock that has ended, or failures
        all before `counted_since`, with no lock); how many."""


class IdempotencyRecords(Protocol):
    def purge(self, created_before: datetime) -> int:
        """Delete the stored answers of requests made before that instant; how many."""


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

    def records(self, chain: str) -> Iterator[AuditRecord]:
        """Every event of the chain, in sequence order (read in batches)."""


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
        self,
        study: str,
        subject_id: str,
        site: str,
        strata: Mapping[str, str],
        mode: str,
        rescreen_of: int | None = None,
    ) -> Subject: ...

    def by_pk(self, study: str, pk: int) -> Subject | None:
        """The subject of the study with that primary key (a re-screening link), or None."""

    def rescreened_as(self, subject: Subject) -> Subject | None:
        """The later registration that re-screens `subject`, or None."""

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

    def mark_ended(
        self, subject: Subject, status: SubjectStatus, at: datetime, reason: str | None = None
    ) -> Subject | None:
        """The subject moved from randomized to `status` at `at`; None (nothing changed)
        when it was no longer randomized: a conditional UPDATE that cannot succeed twice."""

    def mark_screen_failed(self, subject: Subject, at: datetime, reason: str) -> Subject | None:
        """The subject moved from registered to screen_failed at `at`; None (nothing
        changed) when it was no longer registered (a conditional UPDATE)."""

    def set_strata(
        self,
        subject: Subject,
        strata: Mapping[str, str],
        corrected: Mapping[str, str] | None,
    ) -> Subject:
        """Store the registered levels and the levels as corrected (None: never corrected)."""

    def set_eligibility(self, subject: Subject, answers: Mapping[str, bool]) -> Subject:
        """Keep the eligibility answers attested at the randomization."""

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


@dataclass(frozen=True, slots=True)
class NewKit:
    """A kit about to be stored at a depot (or in transit from it to `site`, when it is
    part of a site's initial shipment); its type is sealed on the way in."""

    kit_number: str
    kit_type: str
    lot: Lot
    depot: str
    site: str | None = None


@dataclass(frozen=True, slots=True)
class KitRecord:
    """A kit as the supply use cases see it: where it is and what happened to it, no type."""

    id: int
    kit_number: str
    status: KitStatus
    lot: str
    expiry_date: date
    depot: str | None
    site: str | None
    subject_id: str | None
    visit: str | None
    quarantined_from: KitStatus | None


@dataclass(frozen=True, slots=True)
class ShipmentRecord:
    id: int
    code: str
    kind: str  # initial | resupply
    status: str  # in_transit | received
    depot: str
    site: str
    created_at: datetime
    received_at: datetime | None
    received_by: str | None
    kit_numbers: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ExcursionRecord:
    id: int
    code: str
    site: str | None
    shipment: str | None
    description: str
    reported_at: datetime
    reported_by: str
    resolution: str | None  # released | rejected
    resolved_at: datetime | None
    resolved_by: str | None
    kit_ids: tuple[int, ...]
    kit_numbers: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DispensationRecord:
    id: int
    visit: str
    quantity: int
    dispensed_at: datetime
    dispensed_by: str
    kits: tuple[KitRecord, ...]  # every kit handed out at the visit, replacements included


@dataclass(frozen=True, slots=True)
class SubjectOnTreatment:
    subject: Subject
    dispensed: frozenset[str]  # visit codes settled: dispensed, or recorded missed or held
    last_quantity: int  # kits at the last dispensation (0: none yet)


class ResupplyRepository(Protocol):
    """The daily resupply review: its once-a-day claim and what it reads of the subjects."""

    def claim_review(self, study: str, on: date, at: datetime) -> bool:
        """True for the first caller of the day (kept with the caller's transaction)."""
        ...

    def on_treatment(self, study: str, site: str) -> list[SubjectOnTreatment]: ...

    def shipped_to(self, study: str, site: str) -> int:
        """Kits ever shipped to the site."""
        ...

    def had_refusal(self, study: str, site: str, but: str) -> bool:
        """Whether a visit at the site other than `but` was ever refused for supply."""
        ...


class SupplyRepository(Protocol):
    """Kits, lots, shipments, dispensations and excursions of a study (by slug).

    A kit's type is sealed in the database: only `add_kits` (sealing) and `stock`/`types_of`
    (opening) ever handle it. Every method that changes kits of a site runs after
    `lock_site` for that site, so a site's dispensing, receipts, excursions and resupply
    are serialized (and take their locks in one order: site, then kits by ascending id).
    """

    def kit_count(self, study: str) -> int: ...

    def add_kits(self, study: str, kits: Sequence[NewKit], at: datetime) -> None: ...

    def lock_site(self, study: str, site: str) -> None:
        """Hold the site's row until the transaction ends."""

    def stock(
        self, study: str, status: KitStatus, *, site: str | None = None, depot: str | None = None
    ) -> list[KitCandidate]:
        """The kits of that status at a site (or at a depot), their types opened."""

    def types_of(self, study: str, kit_ids: Sequence[int]) -> dict[int, str]: ...

    def move_kits(
        self,
        study: str,
        kit_ids: Sequence[int],
        expected: KitStatus,
        new: KitStatus,
        *,
        site: str | None = None,
        subject_pk: int | None = None,
        dispensation_id: int | None = None,
    ) -> bool:
        """Move every kit from `expected` to `new`, or none: False when any kit was no longer
        `expected` (taken meanwhile). Entering quarantine remembers `expected` as
        `quarantined_from`; leaving it forgets it."""

    def kits(
        self,
        study: str,
        *,
        ids: Sequence[int] | None = None,
        numbers: Sequence[str] | None = None,
        shipment_id: int | None = None,
        sites: frozenset[str] | None = None,
    ) -> list[KitRecord]:
        """Kits by id, by number or by shipment, ordered by number; `sites` (None: all)
        hides the others, including every kit not at or bound for a site."""

    def status_counts(self, study: str, site: str) -> dict[str, int]: ...

    def add_shipment(
        self,
        study: str,
        code: str,
        kind: str,
        depot: str,
        site: str,
        kit_ids: Sequence[int],
        at: datetime,
    ) -> ShipmentRecord: ...

    def shipment_count(self, study: str, site: str) -> int: ...

    def shipment(
        self,
        study: str,
        code: str,
        *,
        sites: frozenset[str] | None = None,
        for_update: bool = False,
    ) -> ShipmentRecord | None: ...

    def shipments(
        self, study: str, *, sites: frozenset[str] | None = None, site: str | None = None
    ) -> list[ShipmentRecord]: ...

    def mark_received(self, shipment_id: int, at: datetime, by: str) -> None: ...

    def add_dispensation(
        self,
        subject: Subject,
        visit: str,
        weight_kg: Decimal,
        quantity: int,
        at: datetime,
        by: str,
    ) -> int: ...

    def dispensations(self, subject: Subject) -> list[DispensationRecord]: ...

    def handed_out_to_discontinued(self, study: str, site: str) -> list[HandedOut]:
        """Every kit handed out to the site's discontinued subjects (for `expected_back`)."""
        ...

    def dispensed_visits(self, subject: Subject) -> set[str]:
        """The visits the subject has been dispensed at."""

    def add_excursion(
        self,
        study: str,
        code: str,
        site: str,
        shipment_id: int | None,
        description: str,
        kit_ids: Sequence[int],
        at: datetime,
        by: str,
    ) -> ExcursionRecord: ...

    def excursion(
        self, study: str, code: str, *, for_update: bool = False
    ) -> ExcursionRecord | None: ...

    def resolve_excursion(
        self, excursion_id: int, resolution: str, at: datetime, by: str
    ) -> None: ...

    def excursions(
        self, study: str, *, sites: frozenset[str] | None = None
    ) -> list[ExcursionRecord]:
        """The study's excursions (at `sites` only, when given), newest first."""


@dataclass(frozen=True, slots=True)
class RewrappedKey:
    """A study data key now wrapped by another key-encryption key."""

    study: str
    dek_version: int
    old_kek_id: str


@dataclass(frozen=True, slots=True)
class ResealedStudy:
    """How many legacy (unpadded) envelopes of one study were sealed again, by column."""

    study: str
    counts: Mapping[str, int]  # "table.column" -> envelopes re-sealed


class BlindingRepository(Protocol):
    """Unblindings, notifications, the study lock and key re-wrapping
    (app.services.blinding). Nothing here stores an arm."""

    def locked(self, study: str, *, hold: bool = False) -> tuple[datetime, str] | None:
        """(locked_at, locked_by) of a locked study, None while it is not locked. `hold`
        share-locks the study row until commit, so a concurrent `lock` waits for it."""

    def lock(self, study: str, at: datetime, by: str) -> bool:
        """Lock the study unless it is locked already; True when this call locked it."""

    def add_unblinding(
        self, subject: Subject, by: str, role: str, reason: str, at: datetime
    ) -> int: ...

    def notify(self, study: str, kind: str, payload: Mapping[str, Any], at: datetime) -> None:
        """Queue a notification (outbox), delivered after commit by a relay."""

    def rewrap_deks(self, new_kek_id: str) -> list[RewrappedKey]:
        """Re-wrap every study data key under the KEK `new_kek_id` (in this transaction)."""

    def reseal_user_secrets(self, new_kek_id: str) -> int:
        """Seal again under the KEK `new_kek_id` every secret sealed under a KEK itself (the
        web users' second factors); returns how many."""

    def reseal_legacy(self) -> list[ResealedStudy]:
        """Seal again, padded, every legacy envelope of every study (in this transaction);
        the studies that had any, with their counts."""


@dataclass(frozen=True, slots=True)
class VisitRecord:
    """A scheduled visit recorded without a dispensation (missed or held), with its reason."""

    visit: str
    kind: VisitKind
    reason: str
    recorded_at: datetime
    recorded_by: str


@dataclass(frozen=True, slots=True)
class SubjectVisits:
    """A subject on treatment at a site as the due view sees it: no arm."""

    subject_id: str
    randomized_at: datetime
    dispensed: frozenset[str]  # visit codes, unscheduled ones included
    recorded: Mapping[str, VisitKind]


class VisitRepository(Protocol):
    """Missed and held visits (table visit_event), and the due view's reading of a site."""

    def recorded(self, subject: Subject) -> list[VisitRecord]: ...

    def record(
        self, subject: Subject, visit: str, kind: VisitKind, reason: str, at: datetime, by: str
    ) -> VisitRecord: ...

    def on_treatment(self, study: str, site: str) -> list[SubjectVisits]:
        """The site's randomized subjects (never ended, screen-failed or registered ones),
        by subject id, each with its dispensed and recorded visits."""


@dataclass(frozen=True, slots=True)
class SiteState:
    """A site as enrolment control sees it (the definition's `active` is stored with it)."""

    code: str
    country: str
    active: bool
    enrolment_open: bool


class EnrolmentRepository(Protocol):
    """Enrolment caps, a site's enrolment state, and the randomized subjects they count
    (app.domain.enrolment); nothing here reads an arm."""

    def caps(self, study: str) -> list[EnrolmentCap]: ...

    def lock_caps(self, study: str, ids: Sequence[int]) -> list[EnrolmentCap]:
        """The caps by id, locked until commit in id order (one order for every caller)."""

    def cap(self, study: str, scope: CapScope, target: str) -> EnrolmentCap | None:
        """The cap, locked until commit."""

    def save_cap(self, study: str, cap: EnrolmentCap) -> EnrolmentCap:
        """Create or replace the cap of its scope and target."""

    def delete_cap(self, study: str, cap: EnrolmentCap) -> None: ...

    def site(self, study: str, code: str, *, for_update: bool = False) -> SiteState | None:
        """The site; `for_update` locks its row (the lock dispensing and resupply take)."""

    def set_enrolment_open(self, study: str, code: str, is_open: bool) -> None: ...

    def count_randomized(
        self,
        study: str,
        mode: str,
        *,
        site: str | None = None,
        country: str | None = None,
        levels: Mapping[str, str] | None = None,
    ) -> int:
        """Subjects ever randomized in the mode, at the site or country, with those levels."""

    def enrollees(self, study: str, mode: str) -> list[Enrollee]:
        """Every subject ever randomized in the mode: its site, country and levels."""


class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, in UTC."""


class UnitOfWork(Protocol):
    """One database transaction; audit events recorded in it are written before commit."""

    clock: Clock

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
    def resupply(self) -> ResupplyRepository: ...

    @property
    def blinding(self) -> BlindingRepository: ...

    @property
    def visits(self) -> VisitRepository: ...

    @property
    def enrolment(self) -> EnrolmentRepository: ...

    @property
    def idempotency_records(self) -> IdempotencyRecords: ...

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
