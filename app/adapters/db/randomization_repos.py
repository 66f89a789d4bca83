"""Subjects, randomization lists, strata, slots and allocations.

Arms (with their block and block size) and seeds are sealed under the study's data key,
with associated data naming the record, so nothing here is readable in the database.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.orm import Session

from app.adapters.crypto.envelope import StudyCipher, stratum_size
from app.adapters.db import hot, memo
from app.adapters.db.keystore import KeyService
from app.adapters.db.models import (
    AllocationRow,
    DispensationRow,
    KitRow,
    RandomizationListRow,
    SiteRow,
    StratumRow,
    SubjectRow,
)
from app.domain.randomization import Slot
from app.domain.sealed import Sealed
from app.domain.subjects import Subject, SubjectStatus
from app.services.ports import DispensationView, ListInfo, StratumPlan, StratumState

# The statements of every randomization, built once with bound parameters: building a
# statement and its cache key on each call cost about 150 us of CPU, more than running it.
_subjects, _sites = SubjectRow.__table__, SiteRow.__table__
_SUBJECT = (
    select(_subjects, _sites.c.code.label("site_code"))
    .join(_sites, _sites.c.id == _subjects.c.site_id)
    .where(
        _subjects.c.study_id == bindparam("study_id"), _subjects.c.subject_code == bindparam("code")
    )
)
_IN_SITES = _sites.c.code.in_(bindparam("sites", expanding=True))
_SUBJECT_GET = {
    (False, False): hot.Hot(_SUBJECT),
    (True, False): hot.Hot(_SUBJECT.where(_IN_SITES)),
    (False, True): hot.Hot(_SUBJECT.with_for_update(of=_subjects)),
    (True, True): hot.Hot(_SUBJECT.where(_IN_SITES).with_for_update(of=_subjects)),
}
_MARK_RANDOMIZED = hot.Hot(
    update(SubjectRow)
    .where(_subjects.c.id == bindparam("pk"))
    .values(
        status=bindparam("new_status"),
        randomized_at=bindparam("at"),
        randomization_number=bindparam("number"),
    )
)
_lists = RandomizationListRow.__table__.c
_ACTIVE_LIST = hot.Hot(
    select(_lists.id, _lists.mode, _lists.version, _lists.method).where(
        _lists.study_id == bindparam("study_id"),
        _lists.mode == bindparam("mode"),
        _lists.status == "active",
    )
)
_stratum = StratumRow.__table__.c
_LOCK_STRATUM = hot.Hot(
    select(
        _stratum.id,
        _stratum.next_sequence,
        _stratum.length,
        _stratum.low_warned_at,
        _stratum.slots_sealed,
    )
    .where(_stratum.list_id == bindparam("list_id"), _stratum.key == bindparam("key"))
    .with_for_update()
)
_ADVANCE = hot.Hot(update(StratumRow).where(_stratum.id == bindparam("stratum_id")))
_INSERT_ALLOCATION = hot.Hot(insert(AllocationRow))
_allocation = AllocationRow.__table__.c
_ARM_OF = hot.Hot(select(_allocation.arm_sealed).where(_allocation.subject_pk == bindparam("pk")))


class _StudyScoped:
    def __init__(self, session: Session, keys: KeyService) -> None:
        self._session = session
        self._keys = keys

    def _study_id(self, slug: str) -> int:
        return memo.study_id(self._session, slug)

    def _cipher(self, slug: str) -> StudyCipher:
        return self._keys.cipher(self._session, self._study_id(slug), slug)

    def _longest_arm(self, slug: str) -> int:
        """The study's longest arm code in bytes: with a stratum's slot count (stored in
        clear), it sets the stratum's sealed size (app.adapters.crypto.envelope)."""
        from app.adapters.db.repositories import SqlStudyRepository

        stored = SqlStudyRepository(self._session, self._keys).get(slug)
        assert stored is not None
        return stored.study.longest_arm_bytes()


def _subject(row: Any, study: str, site: str) -> Subject:
    return Subject(
        pk=row.id,
        study=study,
        subject_id=row.subject_code,
        site=site,
        status=SubjectStatus(row.status),
        strata=dict(row.strata),
        registered_at=row.registered_at,
        randomized_at=row.randomized_at,
        randomization_number=row.randomization_number,
        unblinded=row.unblinded,
        mode=row.mode,
        ended_at=row.ended_at,
        end_reason=row.end_reason,
        rescreen_of=row.rescreen_of,
        strata_corrected=dict(row.strata_corrected) if row.strata_corrected else None,
        eligibility=dict(row.eligibility) if row.eligibility else None,
    )


class SqlSubjectRepository(_StudyScoped):
    def add(
        self,
        study: str,
        subject_id: str,
        site: str,
        strata: Mapping[str, str],
        mode: str,
        rescreen_of: int | None = None,
    ) -> Subject:
        study_id = self._study_id(study)
        site_id = self._session.scalar(
            select(SiteRow.id).where(SiteRow.study_id == study_id, SiteRow.code == site)
        )
        assert site_id is not None
        row = SubjectRow(
            study_id=study_id,
            site_id=site_id,
            subject_code=subject_id,
            status=SubjectStatus.REGISTERED.value,
            strata=dict(strata),
            registered_at=datetime.now(UTC),
            randomized_at=None,
            mode=mode,
            unblinded=False,
            rescreen_of=rescreen_of,
        )
        self._session.add(row)
        self._session.flush()
        return _subject(row, study, site)

    def get(
        self,
        study: str,
        subject_id: str,
        *,
        sites: frozenset[str] | None = None,
        for_update: bool = False,
    ) -> Subject | None:
        try:
            study_id = self._study_id(study)
        except LookupError:
            return None
        params: dict[str, Any] = {"study_id": study_id, "code": subject_id}
        if sites is not None:
            params["sites"] = sorted(sites)
        rows = hot.rows(self._session, _SUBJECT_GET[(sites is not None, for_update)], params)
        if not rows:
            return None
        found = rows[0]
        memo.ids(self._session)[("site", study, found.site_code)] = found.site_id
        return _subject(found, study, found.site_code)

    def mark_randomized(self, subject: Subject, number: int, at: datetime) -> Subject:
        hot.later(
            self._session,
            _MARK_RANDOMIZED,
            {
                "pk": subject.pk,
                "new_status": SubjectStatus.RANDOMIZED.value,
                "at": at,
                "number": number,
            },
        )
        return replace(
            subject,
            status=SubjectStatus.RANDOMIZED,
            randomized_at=at,
            randomization_number=number,
        )

    def mark_ended(
        self, subject: Subject, status: SubjectStatus, at: datetime, reason: str | None = None
    ) -> Subject | None:
        changed = self._session.execute(
            update(SubjectRow)
            .where(
                SubjectRow.id == subject.pk,
                SubjectRow.status == SubjectStatus.RANDOMIZED.value,
            )
            .values(status=status.value, ended_at=at, end_reason=reason)
        )
        if getattr(changed, "rowcount", 0) != 1:
            return None
        return replace(subject, status=status, ended_at=at, end_reason=reason)

    def by_pk(self, study: str, pk: int) -> Subject | None:
        try:
            study_id = self._study_id(study)
        except LookupError:
            return None
        found = self._session.execute(
            select(_subjects, _sites.c.code.label("site_code"))
            .join(_sites, _sites.c.id == _subjects.c.site_id)
            .where(_subjects.c.study_id == study_id, _subjects.c.id == pk)
        ).first()
        return None if found is None else _subject(found, study, found.site_code)

    def rescreened_as(self, subject: Subject) -> Subject | None:
        found = self._session.execute(
            select(_subjects, _sites.c.code.label("site_code"))
            .join(_sites, _sites.c.id == _subjects.c.site_id)
            .where(_subjects.c.rescreen_of == subject.pk)
            .order_by(_subjects.c.id)
        ).first()
        return None if found is None else _subject(found, subject.study, found.site_code)

    def mark_screen_failed(self, subject: Subject, at: datetime, reason: str) -> Subject | None:
        changed = self._session.execute(
            update(SubjectRow)
            .where(
                SubjectRow.id == subject.pk,
                SubjectRow.status == SubjectStatus.REGISTERED.value,
            )
            .values(status=SubjectStatus.SCREEN_FAILED.value, ended_at=at, end_reason=reason)
        )
        if getattr(changed, "rowcount", 0) != 1:
            return None
        return replace(subject, status=SubjectStatus.SCREEN_FAILED, ended_at=at, end_reason=reason)

    def set_strata(
        self,
        subject: Subject,
        strata: Mapping[str, str],
        corrected: Mapping[str, str] | None,
    ) -> Subject:
        self._session.execute(
            update(SubjectRow)
            .where(SubjectRow.id == subject.pk)
            .values(
                strata=dict(strata), strata_corrected=None if corrected is None else dict(corrected)
            )
        )
        return replace(
            subject,
            strata=dict(strata),
            strata_corrected=None if corrected is None else dict(corrected),
        )

    def set_eligibility(self, subject: Subject, answers: Mapping[str, bool]) -> Subject:
        self._session.execute(
            update(SubjectRow).where(SubjectRow.id == subject.pk).values(eligibility=dict(answers))
        )
        return replace(subject, eligibility=dict(answers))

    def set_unblinded(self, subject: Subject) -> None:
        self._session.execute(
            update(SubjectRow).where(SubjectRow.id == subject.pk).values(unblinded=True)
        )

    def dispensations(self, subject: Subject) -> list[DispensationView]:
        rows = self._session.execute(
            select(DispensationRow, KitRow.kit_number)
            .outerjoin(KitRow, KitRow.dispensation_id == DispensationRow.id)
            .where(DispensationRow.subject_pk == subject.pk)
            .order_by(DispensationRow.dispensed_at, DispensationRow.id, KitRow.kit_number)
        ).all()
        views: dict[int, DispensationView] = {}
        for row, kit_number in rows:
            view = views.get(row.id) or DispensationView(
                row.visit, row.dispensed_at, str(row.weight_kg), ()
            )
            if kit_number is not None:
                view = DispensationView(
                    view.visit, view.dispensed_at, view.weight_kg, (*view.kit_numbers, kit_number)
                )
            views[row.id] = view
        return list(views.values())


def _stratum_record(list_id: int, key: str) -> str:
    return f"{list_id}:{key}"


def _encode_slots(slots: Sequence[tuple[Slot, int]]) -> bytes:
    return json.dumps(
        [[slot.arm, slot.block, slot.block_size, number] for slot, number in slots],
        separators=(",", ":"),
    ).encode()


class SqlListRepository(_StudyScoped):
    """Each stratum's slots are one sealed JSON list of [arm, block, block size, number],
    in sequence order; a randomization opens its stratum's envelope and takes one line."""

    def __init__(self, session: Session, keys: KeyService) -> None:
        super().__init__(session, keys)
        self._locked_slots: dict[int, bytes] = {}

    def _info(self, row: RandomizationListRow, study: str) -> ListInfo:
        return ListInfo(row.id, study, row.mode, row.version, row.method)

    def active(self, study: str, mode: str) -> ListInfo | None:
        found = hot.rows(
            self._session, _ACTIVE_LIST, {"study_id": self._study_id(study), "mode": mode}
        )
        if not found:
            return None
        row = found[0]
        return ListInfo(row.id, study, row.mode, row.version, row.method)

    def create(
        self,
        study: str,
        mode: str,
        method: str,
        seed: bytes | None,
        strata: Sequence[StratumPlan],
        generated_by: str,
    ) -> ListInfo:
        study_id = self._study_id(study)
        cipher = self._cipher(study)
        version = 1 + (
            self._session.scalar(
                select(func.max(RandomizationListRow.version)).where(
                    RandomizationListRow.study_id == study_id, RandomizationListRow.mode == mode
                )
            )
            or 0
        )
        row = RandomizationListRow(
            study_id=study_id,
            mode=mode,
            version=version,
            method=method,
            status="active",
            seed_sealed=None
            if seed is None
            else cipher.seal("seed", f"{mode}:v{version}", seed).envelope,
            generated_at=datetime.now(UTC),
            generated_by=generated_by,
        )
        self._session.add(row)
        self._session.flush()
        site_ids = self._site_ids(study_id)
        if not strata:
            return self._info(row, study)
        longest_arm = self._longest_arm(study)
        self._session.execute(
            insert(StratumRow),
            [
                {
                    "list_id": row.id,
                    "key": plan.key,
                    "site_id": site_ids.get(plan.site) if plan.site else None,
                    "levels": dict(plan.levels),
                    "next_sequence": 1,
                    "length": len(plan.slots),
                    "slots_sealed": cipher.seal(
                        "stratum",
                        _stratum_record(row.id, plan.key),
                        _encode_slots(plan.slots),
                        size=stratum_size(len(plan.slots), longest_arm),
                    ).envelope,
                    "low_warned_at": None,
                }
                for plan in strata
            ],
        )
        return self._info(row, study)

    def _site_ids(self, study_id: int) -> dict[str, int]:
        return {
            code: site_id
            for code, site_id in self._session.execute(
                select(SiteRow.code, SiteRow.id).where(SiteRow.study_id == study_id)
            ).all()
        }

    def _open(self, info: ListInfo, key: str, sealed: bytes) -> list[tuple[Slot, int]]:
        raw = self._cipher(info.study).open(
            "stratum", _stratum_record(info.id, key), Sealed(sealed)
        )
        return [
            (Slot(sequence=i, block=block, block_size=size, arm=arm), number)
            for i, (arm, block, size, number) in enumerate(json.loads(raw), start=1)
        ]

    def supersede(self, list_id: int) -> None:
        self._session.execute(
            update(RandomizationListRow)
            .where(RandomizationListRow.id == list_id)
            .values(status="superseded")
        )

    def allocated_count(self, list_id: int) -> int:
        return int(
            self._session.scalar(
                select(func.count())
                .select_from(AllocationRow)
                .where(AllocationRow.list_id == list_id)
            )
            or 0
        )

    def _state(self, row: StratumRow) -> StratumState:
        return StratumState(
            row.id, row.key, row.next_sequence, row.length, row.low_warned_at is not None
        )

    def lock_stratum(self, list_id: int, key: str) -> StratumState | None:
        rows = hot.rows(self._session, _LOCK_STRATUM, {"list_id": list_id, "key": key})
        if not rows:
            return None
        found = rows[0]
        # The row is locked until commit: its slots are kept for `slot`.
        self._locked_slots[found.id] = found.slots_sealed
        return StratumState(
            found.id, key, found.next_sequence, found.length, found.low_warned_at is not None
        )

    def strata(self, info: ListInfo) -> list[StratumState]:
        rows = self._session.scalars(
            select(StratumRow).where(StratumRow.list_id == info.id).order_by(StratumRow.key)
        ).all()
        return [self._state(r) for r in rows]

    def slot(self, info: ListInfo, stratum: StratumState, sequence: int) -> tuple[Slot, int]:
        sealed = self._locked_slots.get(stratum.id) or self._session.scalar(
            select(StratumRow.slots_sealed).where(StratumRow.id == stratum.id)
        )
        assert sealed is not None
        return self._open(info, stratum.key, sealed)[sequence - 1]

    def advance(self, stratum: StratumState, next_sequence: int, low_warned: bool) -> None:
        values: dict[str, Any] = {"stratum_id": stratum.id, "next_sequence": next_sequence}
        if low_warned and not stratum.low_warned:
            values["low_warned_at"] = datetime.now(UTC)
        hot.later(self._session, _ADVANCE, values)

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
    ) -> None:
        cipher = self._cipher(subject.study)
        hot.later(
            self._session,
            _INSERT_ALLOCATION,
            {
                "subject_pk": subject.pk,
                "list_id": info.id,
                "stratum_id": stratum.id,
                "sequence": sequence,
                "stratum_key": stratum.key,
                "randomization_number": number,
                "arm_sealed": cipher.seal("allocation", subject.subject_id, arm.encode()).envelope,
                "trace_sealed": None
                if trace is None
                else cipher.seal(
                    "trace", subject.subject_id, json.dumps(trace, default=str).encode()
                ).envelope,
                "allocated_at": at,
            },
        )

    def arm_of(self, subject: Subject) -> str | None:
        found = hot.rows(self._session, _ARM_OF, {"pk": subject.pk})
        if not found:
            return None
        sealed = found[0][0]
        return (
            self._cipher(subject.study)
            .open("allocation", subject.subject_id, Sealed(sealed))
            .decode()
        )

    def seed(self, info: ListInfo) -> bytes | None:
        row = self._session.get(RandomizationListRow, info.id)
        if row is None or row.seed_sealed is None:
            return None
        return self._cipher(info.study).open(
            "seed", f"{info.mode}:v{info.version}", Sealed(row.seed_sealed)
        )

    def slots(self, info: ListInfo) -> dict[str, list[tuple[Slot, int]]]:
        rows = self._session.execute(
            select(StratumRow.key, StratumRow.slots_sealed)
            .where(StratumRow.list_id == info.id)
            .order_by(StratumRow.key)
        ).all()
        return {key: self._open(info, key, sealed) for key, sealed in rows}

    def used_numbers(self, info: ListInfo) -> set[int]:
        return {number for rows in self.slots(info).values() for _slot, number in rows}

    def extension_count(self, info: ListInfo, key: str) -> int:
        from app.adapters.db.models import AuditEventRow

        return int(
            self._session.scalar(
                select(func.count())
                .select_from(AuditEventRow)
                .where(
                    AuditEventRow.chain == info.study,
                    AuditEventRow.action == "stratum.extended",
                    AuditEventRow.entity_id == key,
                )
            )
            or 0
        )

    def append_slots(self, info: ListInfo, plan: StratumPlan) -> None:
        self._locked_slots.clear()
        row = self._session.scalars(
            select(StratumRow)
            .where(StratumRow.list_id == info.id, StratumRow.key == plan.key)
            .with_for_update()
        ).first()
        cipher = self._cipher(info.study)
        if row is None:
            site_ids = self._site_ids(self._study_id(info.study))
            row = StratumRow(
                list_id=info.id,
                key=plan.key,
                site_id=site_ids.get(plan.site) if plan.site else None,
                levels=dict(plan.levels),
                next_sequence=1,
                length=0,
                slots_sealed=b"",
                low_warned_at=None,
            )
            self._session.add(row)
            existing: list[tuple[Slot, int]] = []
        else:
            existing = self._open(info, plan.key, row.slots_sealed)
        combined = existing + list(plan.slots)
        row.slots_sealed = cipher.seal(
            "stratum",
            _stratum_record(info.id, plan.key),
            _encode_slots(combined),
            size=stratum_size(len(combined), self._longest_arm(info.study)),
        ).envelope
        row.length = len(combined)
        if row.next_sequence <= row.length:
            row.low_warned_at = None
        self._session.flush()

    def allocations(self, study: str, mode: str) -> list[tuple[Subject, str, int]]:
        cipher = self._cipher(study)
        rows = self._session.execute(
            select(SubjectRow, SiteRow.code, AllocationRow)
            .join(AllocationRow, AllocationRow.subject_pk == SubjectRow.id)
            .join(SiteRow, SiteRow.id == SubjectRow.site_id)
            .where(SubjectRow.study_id == self._study_id(study), SubjectRow.mode == mode)
            .order_by(AllocationRow.allocated_at, AllocationRow.id)
        )
        out = []
        for subject_row, site, allocation in rows:
            arm = cipher.open(
                "allocation", subject_row.subject_code, Sealed(allocation.arm_sealed)
            ).decode()
            out.append((_subject(subject_row, study, site), arm, allocation.randomization_number))
        return out
