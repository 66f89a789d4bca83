"""What must hold in the database after any load, crash or fault: read straight from the
tables, not through the service under test."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass

from sqlalchemy import Engine, func, select

from app.adapters.db.models import (
    AllocationRow,
    AuditEventRow,
    DispensationRow,
    KitRow,
    StratumRow,
    StudyRow,
    SubjectRow,
)
from tests.reliability.service import Service


@dataclass(frozen=True)
class Trial:
    randomized: frozenset[str]
    registered: frozenset[str]
    kits_dispensed: int


def whole_or_nothing(engine: Engine, slug: str, first_visit: str = "D1") -> Trial:
    """Every subject is wholly randomized (status, number, one allocation, one audit event,
    its first visit dispensed with exactly its quantity of kits, each audited) or not at all
    (no allocation, no dispensation, no kit, no randomization event)."""
    with engine.connect() as conn:
        study_id = conn.execute(select(StudyRow.id).where(StudyRow.slug == slug)).scalar_one()
        subjects = conn.execute(select(SubjectRow).where(SubjectRow.study_id == study_id)).all()
        allocations = Counter(conn.execute(select(AllocationRow.subject_pk)).scalars())
        dispensations = defaultdict(list)
        for row in conn.execute(select(DispensationRow)):
            dispensations[row.subject_pk].append(row)
        kits_by_dispensation = Counter(
            conn.execute(
                select(KitRow.dispensation_id).where(KitRow.dispensation_id.is_not(None))
            ).scalars()
        )
        kits_by_subject = Counter(
            conn.execute(select(KitRow.subject_pk).where(KitRow.subject_pk.is_not(None))).scalars()
        )
        events = Counter(
            (row.action, row.subject_id)
            for row in conn.execute(
                select(AuditEventRow.action, AuditEventRow.subject_id).where(
                    AuditEventRow.action.in_(["subject.randomized", "dispensation.created"])
                )
            )
        )
        dispensed_status = conn.execute(
            select(func.count())
            .select_from(KitRow)
            .where(KitRow.study_id == study_id, KitRow.status == "dispensed")
        ).scalar_one()
    randomized, registered, problems = set(), set(), []
    for s in subjects:
        mine = dispensations.get(s.id, [])
        if s.status == "randomized":
            randomized.add(s.subject_code)
            whole = (
                s.randomization_number is not None
                and allocations[s.id] == 1
                and events[("subject.randomized", s.subject_code)] == 1
                and any(d.visit == first_visit for d in mine)
                and events[("dispensation.created", s.subject_code)] == len(mine)
                and all(kits_by_dispensation[d.id] == d.quantity for d in mine)
                and kits_by_subject[s.id] == sum(d.quantity for d in mine)
            )
        else:
            registered.add(s.subject_code)
            whole = (
                s.status == "registered"
                and s.randomization_number is None
                and allocations[s.id] == 0
                and not mine
                and kits_by_subject[s.id] == 0
                and events[("subject.randomized", s.subject_code)] == 0
                and events[("dispensation.created", s.subject_code)] == 0
            )
        if not whole:
            problems.append(s.subject_code)
    assert problems == [], f"half-written subjects: {problems}"
    linked = sum(kits_by_dispensation.values())
    assert dispensed_status == linked, "a kit is dispensed without a dispensation, or back"
    return Trial(frozenset(randomized), frozenset(registered), linked)


def slots_used(engine: Engine, stratum_key: str) -> tuple[list[int], int]:
    """The sequence numbers used in a stratum (in order) and its cursor."""
    with engine.connect() as conn:
        stratum = conn.execute(select(StratumRow).where(StratumRow.key == stratum_key)).one()
        used = list(
            conn.execute(
                select(AllocationRow.sequence)
                .where(AllocationRow.stratum_id == stratum.id)
                .order_by(AllocationRow.sequence)
            ).scalars()
        )
    return used, stratum.next_sequence


def assert_slots_are_a_prefix(engine: Engine, stratum_key: str, count: int) -> None:
    used, cursor = slots_used(engine, stratum_key)
    assert used == list(range(1, count + 1)), f"a slot was skipped or used twice: {used}"
    assert cursor == count + 1


def assert_audit_verifies(service: Service) -> None:
    """`iwrs audit verify`, as an operator runs it, exits 0."""
    result = service.iwrs("audit", "verify")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "the audit trail is intact" in result.stdout
