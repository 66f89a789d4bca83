"""Kits, lots, shipments, dispensations and excursions (see app.services.supply).

A kit's type is sealed under the study's data key with associated data naming the kit
number, so a type copied onto another kit does not open. Only `add_kits` seals and only
`stock`/`types_of` open; every other read returns kits without their type.

Kits change status only through `move_kits`: the kits are first locked in ascending id
(SELECT ... ORDER BY id FOR UPDATE), each required to still have the expected status; if
any was taken meanwhile nothing is changed and the caller chooses again, otherwise one
UPDATE moves them all. So a kit can never be taken twice, and two transactions taking
overlapping kits lock them in the same order (no deadlock).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.orm import Session, aliased

from app.adapters.db import hot, memo
from app.adapters.db.bulk import insert_rows
from app.adapters.db.keystore import KeyService
from app.adapters.db.models import (
    DepotRow,
    DispensationRow,
    ExcursionKitRow,
    ExcursionRow,
    KitRow,
    LotRow,
    ShipmentKitRow,
    ShipmentRow,
    SiteRow,
    SubjectRow,
)
from app.adapters.db.randomization_repos import _StudyScoped
from app.domain.dispensing import KitCandidate
from app.domain.kits import KitStatus
from app.domain.returns import HandedOut
from app.domain.sealed import Sealed
from app.domain.subjects import Subject, SubjectStatus
from app.services.ports import (
    DispensationRecord,
    ExcursionRecord,
    KitRecord,
    NewKit,
    ShipmentRecord,
)

KIT_TYPE_KIND = "kit_type"
SITE_STOCK = (KitStatus.AT_SITE, KitStatus.IN_TRANSIT)
CHUNK = 5000  # ids per statement: well under either database's limit on parameters


# The statements of every dispensing, built once with bound parameters (see
# randomization_repos: building them on each call cost more CPU than running them).
_kit, _sites = KitRow.__table__.c, SiteRow.__table__.c
_LOCK_SITE = hot.Hot(
    select(_sites.id)
    .where(_sites.study_id == bindparam("study_id"), _sites.code == bindparam("code"))
    .with_for_update()
)
_STOCK_COLUMNS = (
    _kit.id,
    _kit.kit_number,
    _kit.kit_type_sealed,
    _kit.expiry_date,
    _kit.status,
    LotRow.__table__.c.code,
)
_WITH_LOT = KitRow.__table__.join(LotRow.__table__, LotRow.__table__.c.id == _kit.lot_id)
_IN_STATUSES = _kit.status.in_(bindparam("statuses", expanding=True))
_STOCK_ANYWHERE = hot.Hot(
    select(*_STOCK_COLUMNS)
    .select_from(_WITH_LOT)
    .where(_kit.study_id == bindparam("study_id"), _IN_STATUSES)
    .order_by(_kit.id)
)
# By place: a site's or depot's id is read through its study, so it alone scopes the kits,
# and the (place, status) index serves the read whatever the planner's statistics say.
_STOCK_AT_SITE = hot.Hot(
    select(*_STOCK_COLUMNS)
    .select_from(_WITH_LOT)
    .where(_kit.site_id == bindparam("place_id"), _IN_STATUSES)
    .order_by(_kit.id)
)
_STOCK_AT_DEPOT = hot.Hot(
    select(*_STOCK_COLUMNS)
    .select_from(_WITH_LOT)
    .where(_kit.depot_id == bindparam("place_id"), _kit.site_id.is_(None), _IN_STATUSES)
    .order_by(_kit.id)
)
_LOCK_KITS = hot.Hot(
    select(_kit.id)
    .where(
        _kit.id.in_(bindparam("ids", expanding=True)),
        _kit.study_id == bindparam("study_id"),
        _kit.status == bindparam("expected"),
    )
    .order_by(_kit.id)
    .with_for_update()
)
# The columns to set are the parameters given (status, updated_at and those of the move).
_MOVE_KITS = hot.Hot(update(KitRow).where(_kit.id.in_(bindparam("ids", expanding=True))))
_KITS = (
    select(
        KitRow.id,
        KitRow.kit_number,
        KitRow.status,
        LotRow.code,
        KitRow.expiry_date,
        DepotRow.code,
        SiteRow.code,
        SubjectRow.subject_code,
        DispensationRow.visit,
        KitRow.quarantined_from,
    )
    .join(LotRow, LotRow.id == KitRow.lot_id)
    .outerjoin(DepotRow, DepotRow.id == KitRow.depot_id)
    .outerjoin(SiteRow, SiteRow.id == KitRow.site_id)
    .outerjoin(SubjectRow, SubjectRow.id == KitRow.subject_pk)
    .outerjoin(DispensationRow, DispensationRow.id == KitRow.dispensation_id)
    .where(KitRow.study_id == bindparam("study_id"))
    .order_by(KitRow.kit_number)
)
_KITS_BY_IDS = _KITS.where(KitRow.id.in_(bindparam("ids", expanding=True)))
_ADD_DISPENSATION = hot.Hot(insert(DispensationRow).returning(DispensationRow.id))
_DISPENSED_VISITS = hot.Hot(
    select(DispensationRow.visit).where(DispensationRow.subject_pk == bindparam("pk"))
)


def _chunks(ids: Sequence[int]) -> list[Sequence[int]]:
    return [ids[i : i + CHUNK] for i in range(0, len(ids), CHUNK)]


class SqlSupplyRepository(_StudyScoped):
    def __init__(self, session: Session, keys: KeyService) -> None:
        super().__init__(session, keys)
        # Stock read in this transaction, until a kit moves: a dispensing reads its site's
        # stock for the gate, the choice and the resupply check.
        self._stock_memo: dict[tuple[str, str, str | None, str | None], list[KitCandidate]] = {}
        self._locked_sites: set[tuple[str, str]] = set()

    # --- places ---------------------------------------------------------------------------

    def _site_id(self, study: str, code: str) -> int:
        return self._place_id(SiteRow, "site", study, code)

    def _depot_id(self, study: str, code: str) -> int:
        return self._place_id(DepotRow, "depot", study, code)

    def _place_id(self, model: Any, kind: str, study: str, code: str) -> int:
        """A site's or depot's row id, read once per transaction."""
        known = memo.ids(self._session)
        key = (kind, study, code)
        if key not in known:
            found = self._session.scalar(
                select(model.id).where(model.study_id == self._study_id(study), model.code == code)
            )
            if found is None:
                raise LookupError(f"{study}/{code}")
            known[key] = found
        return known[key]

    def lock_site(self, study: str, site: str) -> None:
        if (study, site) in self._locked_sites:
            return
        self._locked_sites.add((study, site))

        def locked(found: list[Any]) -> None:
            if found:
                memo.ids(self._session)[("site", study, site)] = found[0][0]
            else:
                self._locked_sites.discard((study, site))

        # Sent with the next statement (the stock read, as a rule): one round trip for both,
        # the lock taken first.
        hot.check_later(
            self._session, _LOCK_SITE, {"study_id": self._study_id(study), "code": site}, locked
        )

    # --- kits ------------------------------------------------------------------------------

    def kit_count(self, study: str) -> int:
        return int(
            self._session.scalar(
                select(func.count())
                .select_from(KitRow)
                .where(KitRow.study_id == self._study_id(study))
            )
            or 0
        )

    def add_kits(self, study: str, kits: Sequence[NewKit], at: datetime) -> None:
        self._stock_memo.clear()
        study_id = self._study_id(study)
        cipher = self._cipher(study)
        lots: dict[str, LotRow] = {}
        for kit in kits:
            if kit.lot.code not in lots:
                lots[kit.lot.code] = LotRow(
                    study_id=study_id, code=kit.lot.code, expiry_date=kit.lot.expiry_date
                )
        self._session.add_all(lots.values())
        self._session.flush()
        depots = {code: self._depot_id(study, code) for code in {k.depot for k in kits}}
        # Looked up before the stream starts: no other statement can run during a COPY.
        sites = {code: self._site_id(study, code) for code in {k.site for k in kits} if code}
        # Inserted in kit-number order, so row ids follow nothing about the types; sealed
        # as they are streamed to the database.
        values = (
            {
                "study_id": study_id,
                "kit_number": kit.kit_number,
                "kit_type_sealed": cipher.seal_remembered(
                    KIT_TYPE_KIND, kit.kit_number, kit.kit_type.encode()
                ).envelope,
                "lot_id": lots[kit.lot.code].id,
                "expiry_date": kit.lot.expiry_date,
                "status": (KitStatus.AT_DEPOT if kit.site is None else KitStatus.IN_TRANSIT).value,
                "quarantined_from": None,
                "depot_id": depots[kit.depot],
                "site_id": None if kit.site is None else sites[kit.site],
                "subject_pk": None,
                "dispensation_id": None,
                "updated_at": at,
            }
            for kit in sorted(kits, key=lambda k: k.kit_number)
        )
        insert_rows(self._session, KitRow, values)

    def stock(
        self,
        study: str,
        status: KitStatus,
        *,
        site: str | None = None,
        depot: str | None = None,
    ) -> list[KitCandidate]:
        memo_key = (study, status.value, site, depot)
        if memo_key not in self._stock_memo:
            # A site's kits on hand and on their way are read together: a dispensing needs
            # both (the choice, then the resupply check).
            statuses = SITE_STOCK if site is not None and status in SITE_STOCK else (status,)
            found = self._read_stock(study, statuses, site, depot)
            for each in statuses:
                self._stock_memo[(study, each.value, site, depot)] = found[each.value]
        return list(self._stock_memo[memo_key])

    def _read_stock(
        self, study: str, statuses: tuple[KitStatus, ...], site: str | None, depot: str | None
    ) -> dict[str, list[KitCandidate]]:
        params: dict[str, Any] = {"statuses": [s.value for s in statuses]}
        if site is not None:
            query, params["place_id"] = _STOCK_AT_SITE, self._site_id(study, site)
        elif depot is not None:
            query, params["place_id"] = _STOCK_AT_DEPOT, self._depot_id(study, depot)
        else:
            query, params["study_id"] = _STOCK_ANYWHERE, self._study_id(study)
        open_type = self._cipher(study).open_envelope_cached
        found: dict[str, list[KitCandidate]] = {s.value: [] for s in statuses}
        # About 170 kits a dispensing: plain tuples, each kit type opened once per process.
        for kit_id, number, sealed, expiry, status, lot in hot.tuples(self._session, query, params):
            kit_type = open_type(KIT_TYPE_KIND, number, sealed).decode()
            found[status].append(KitCandidate(kit_id, kit_type, expiry, number, lot))
        return found

    def types_of(self, study: str, kit_ids: Sequence[int]) -> dict[int, str]:
        cipher = self._cipher(study)
        rows = self._session.execute(
            select(KitRow.id, KitRow.kit_number, KitRow.kit_type_sealed).where(
                KitRow.study_id == self._study_id(study), KitRow.id.in_(sorted(set(kit_ids)))
            )
        )
        return {
            kit_id: cipher.open_cached(KIT_TYPE_KIND, number, Sealed(sealed)).decode()
            for kit_id, number, sealed in rows
        }

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
        ids = sorted(set(kit_ids))
        if not ids:
            return True
        values: dict[str, Any] = {"status": new.value, "updated_at": datetime.now(UTC)}
        if new is KitStatus.QUARANTINED:
            values["quarantined_from"] = expected.value
        elif expected is KitStatus.QUARANTINED:
            values["quarantined_from"] = None
        if site is not None:
            values["site_id"] = self._site_id(study, site)
        if subject_pk is not None:
            values["subject_pk"] = subject_pk
        if dispensation_id is not None:
            values["dispensation_id"] = dispensation_id
        study_id = self._study_id(study)
        locked = 0
        for chunk in _chunks(ids):
            locked += len(
                hot.rows(
                    self._session,
                    _LOCK_KITS,
                    {"ids": chunk, "study_id": study_id, "expected": expected.value},
                )
            )
        if locked != len(ids):
            # Taken meanwhile: the stock read in this transaction is stale, read it again.
            self._stock_memo.clear()
            return False
        for chunk in _chunks(ids):
            hot.later(self._session, _MOVE_KITS, {**values, "ids": chunk})
        self._forget_moved(set(ids), expected, new)
        return True

    def _forget_moved(self, ids: set[int], expected: KitStatus, new: KitStatus) -> None:
        """Keep the stock read in this transaction true: the moved kits leave every list of
        their old status; lists of their new status are read again when asked."""
        for key in list(self._stock_memo):
            if key[1] == new.value:
                del self._stock_memo[key]
            elif key[1] == expected.value:
                self._stock_memo[key] = [c for c in self._stock_memo[key] if c.kit_id not in ids]

    def kits(
        self,
        study: str,
        *,
        ids: Sequence[int] | None = None,
        numbers: Sequence[str] | None = None,
        shipment_id: int | None = None,
        sites: frozenset[str] | None = None,
    ) -> list[KitRecord]:
        params: dict[str, Any] = {"study_id": self._study_id(study)}
        query = _KITS
        if ids is not None:
            query, params["ids"] = _KITS_BY_IDS, sorted(set(ids))
        if numbers is not None:
            query = query.where(KitRow.kit_number.in_(sorted(set(numbers))))
        if shipment_id is not None:
            query = query.join(ShipmentKitRow, ShipmentKitRow.kit_id == KitRow.id).where(
                ShipmentKitRow.shipment_id == shipment_id
            )
        if sites is not None:
            query = query.where(SiteRow.code.in_(sorted(sites)))
        return [
            KitRecord(
                id=kit_id,
                kit_number=number,
                status=KitStatus(status),
                lot=lot,
                expiry_date=expiry,
                depot=depot,
                site=site,
                subject_id=subject_id,
                visit=visit,
                quarantined_from=None if held_from is None else KitStatus(held_from),
            )
            for (
                kit_id,
                number,
                status,
                lot,
                expiry,
                depot,
                site,
                subject_id,
                visit,
                held_from,
            ) in self._session.execute(query, params)
        ]

    def status_counts(self, study: str, site: str) -> dict[str, int]:
        rows = self._session.execute(
            select(KitRow.status, func.count())
            .where(
                KitRow.study_id == self._study_id(study),
                KitRow.site_id == self._site_id(study, site),
            )
            .group_by(KitRow.status)
        )
        return {status: int(count) for status, count in rows}

    # --- shipments -------------------------------------------------------------------------

    def _shipments(self, query: Any) -> list[ShipmentRecord]:
        rows = self._session.execute(query).all()
        numbers: dict[int, list[str]] = {row[0].id: [] for row in rows}
        if numbers:
            for shipment_id, number in self._session.execute(
                select(ShipmentKitRow.shipment_id, KitRow.kit_number)
                .join(KitRow, KitRow.id == ShipmentKitRow.kit_id)
                .where(ShipmentKitRow.shipment_id.in_(sorted(numbers)))
                .order_by(KitRow.kit_number)
            ):
                numbers[shipment_id].append(number)
        return [
            ShipmentRecord(
                id=row.id,
                code=row.code,
                kind=row.kind,
                status=row.status,
                depot=depot,
                site=site,
                created_at=row.created_at,
                received_at=row.received_at,
                received_by=row.received_by,
                kit_numbers=tuple(numbers[row.id]),
            )
            for row, depot, site in rows
        ]

    def _shipment_query(self, study: str) -> Any:
        return (
            select(ShipmentRow, DepotRow.code, SiteRow.code)
            .join(DepotRow, DepotRow.id == ShipmentRow.depot_id)
            .join(SiteRow, SiteRow.id == ShipmentRow.site_id)
            .where(ShipmentRow.study_id == self._study_id(study))
            .execution_options(populate_existing=True)
        )

    def add_shipment(
        self,
        study: str,
        code: str,
        kind: str,
        depot: str,
        site: str,
        kit_ids: Sequence[int],
        at: datetime,
    ) -> ShipmentRecord:
        row = ShipmentRow(
            study_id=self._study_id(study),
            code=code,
            kind=kind,
            status="in_transit",
            depot_id=self._depot_id(study, depot),
            site_id=self._site_id(study, site),
            created_at=at,
            received_at=None,
            received_by=None,
        )
        self._session.add(row)
        self._session.flush()
        insert_rows(
            self._session,
            ShipmentKitRow,
            [{"shipment_id": row.id, "kit_id": kit_id} for kit_id in sorted(set(kit_ids))],
        )
        found = self.shipment(study, code)
        assert found is not None
        return found

    def shipment_count(self, study: str, site: str) -> int:
        return int(
            self._session.scalar(
                select(func.count())
                .select_from(ShipmentRow)
                .where(
                    ShipmentRow.study_id == self._study_id(study),
                    ShipmentRow.site_id == self._site_id(study, site),
                )
            )
            or 0
        )

    def shipment(
        self,
        study: str,
        code: str,
        *,
        sites: frozenset[str] | None = None,
        for_update: bool = False,
    ) -> ShipmentRecord | None:
        query = self._shipment_query(study).where(ShipmentRow.code == code)
        if sites is not None:
            query = query.where(SiteRow.code.in_(sorted(sites)))
        if for_update:
            query = query.with_for_update(of=ShipmentRow)
        found = self._shipments(query)
        return found[0] if found else None

    def shipments(
        self, study: str, *, sites: frozenset[str] | None = None, site: str | None = None
    ) -> list[ShipmentRecord]:
        query = self._shipment_query(study)
        if sites is not None:
            query = query.where(SiteRow.code.in_(sorted(sites)))
        if site is not None:
            query = query.where(SiteRow.code == site)
        return self._shipments(query.order_by(ShipmentRow.created_at, ShipmentRow.id))

    def mark_received(self, shipment_id: int, at: datetime, by: str) -> None:
        self._session.execute(
            update(ShipmentRow)
            .where(ShipmentRow.id == shipment_id)
            .values(status="received", received_at=at, received_by=by)
            .execution_options(synchronize_session=False)
        )

    # --- dispensations ---------------------------------------------------------------------

    def add_dispensation(
        self,
        subject: Subject,
        visit: str,
        weight_kg: Decimal,
        quantity: int,
        at: datetime,
        by: str,
    ) -> int:
        values = {
            "subject_pk": subject.pk,
            "visit": visit,
            "weight_kg": weight_kg,
            "quantity": quantity,
            "dispensed_at": at,
            "dispensed_by": by,
        }
        return int(hot.rows(self._session, _ADD_DISPENSATION, values)[0][0])

    def dispensed_visits(self, subject: Subject) -> set[str]:
        return {row[0] for row in hot.rows(self._session, _DISPENSED_VISITS, {"pk": subject.pk})}

    def dispensations(self, subject: Subject) -> list[DispensationRecord]:
        rows = self._session.execute(
            select(
                DispensationRow.id,
                DispensationRow.visit,
                DispensationRow.quantity,
                DispensationRow.dispensed_at,
                DispensationRow.dispensed_by,
            )
            .where(DispensationRow.subject_pk == subject.pk)
            .order_by(DispensationRow.dispensed_at, DispensationRow.id)
        ).all()
        kit_ids: dict[int, list[int]] = {row.id: [] for row in rows}
        if kit_ids:
            for kit_id, dispensation_id in self._session.execute(
                select(KitRow.id, KitRow.dispensation_id).where(
                    KitRow.dispensation_id.in_(sorted(kit_ids))
                )
            ):
                if dispensation_id is not None:
                    kit_ids[dispensation_id].append(kit_id)
        all_ids = [k for ids in kit_ids.values() for k in ids]
        kits = {k.id: k for k in self.kits(subject.study, ids=all_ids)} if all_ids else {}
        return [
            DispensationRecord(
                id=row.id,
                visit=row.visit,
                quantity=row.quantity,
                dispensed_at=row.dispensed_at,
                dispensed_by=row.dispensed_by,
                kits=tuple(sorted((kits[k] for k in kit_ids[row.id]), key=lambda k: k.kit_number)),
            )
            for row in rows
        ]

    def handed_out_to_discontinued(self, study: str, site: str) -> list[HandedOut]:
        study_id = self._study_id(study)
        rows = self._session.execute(
            select(
                SubjectRow.subject_code,
                SubjectRow.ended_at,
                DispensationRow.id,
                DispensationRow.visit,
                DispensationRow.dispensed_at,
                KitRow.kit_number,
                KitRow.status,
            )
            .join(SiteRow, SiteRow.id == SubjectRow.site_id)
            .join(DispensationRow, DispensationRow.subject_pk == SubjectRow.id)
            .join(KitRow, KitRow.dispensation_id == DispensationRow.id)
            .where(
                SubjectRow.study_id == study_id,
                SiteRow.code == site,
                SubjectRow.status == SubjectStatus.DISCONTINUED.value,
            )
        ).all()
        return [
            HandedOut(
                subject_id=row.subject_code,
                discontinued_at=row.ended_at,
                dispensation_id=row.id,
                visit=row.visit,
                dispensed_at=row.dispensed_at,
                kit_number=row.kit_number,
                status=KitStatus(row.status),
            )
            for row in rows
        ]

    # --- excursions ------------------------------------------------------------------------

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
    ) -> ExcursionRecord:
        row = ExcursionRow(
            study_id=self._study_id(study),
            code=code,
            site_id=self._site_id(study, site),
            shipment_id=shipment_id,
            description=description,
            reported_at=at,
            reported_by=by,
            resolution=None,
            resolved_at=None,
            resolved_by=None,
        )
        self._session.add(row)
        self._session.flush()
        self._session.execute(
            insert(ExcursionKitRow),
            [{"excursion_id": row.id, "kit_id": kit_id} for kit_id in sorted(set(kit_ids))],
        )
        found = self.excursion(study, code)
        assert found is not None
        return found

    def _excursion_query(self, study: str) -> Any:
        shipment = aliased(ShipmentRow)
        return (
            select(ExcursionRow, SiteRow.code, shipment.code)
            .outerjoin(SiteRow, SiteRow.id == ExcursionRow.site_id)
            .outerjoin(shipment, shipment.id == ExcursionRow.shipment_id)
            .where(ExcursionRow.study_id == self._study_id(study))
        )

    def _excursion_records(self, found: Sequence[Any]) -> list[ExcursionRecord]:
        """Records of (excursion row, site code, shipment code) rows, with their kits."""
        if not found:
            return []
        kits: dict[int, list[tuple[int, str]]] = {row.id: [] for row, _site, _code in found}
        for excursion_id, kit_id, kit_number in self._session.execute(
            select(ExcursionKitRow.excursion_id, KitRow.id, KitRow.kit_number)
            .join(KitRow, KitRow.id == ExcursionKitRow.kit_id)
            .where(ExcursionKitRow.excursion_id.in_(list(kits)))
            .order_by(KitRow.kit_number)
        ):
            kits[excursion_id].append((kit_id, kit_number))
        return [
            ExcursionRecord(
                id=row.id,
                code=row.code,
                site=site,
                shipment=shipment_code,
                description=row.description,
                reported_at=row.reported_at,
                reported_by=row.reported_by,
                resolution=row.resolution,
                resolved_at=row.resolved_at,
                resolved_by=row.resolved_by,
                kit_ids=tuple(k for k, _n in kits[row.id]),
                kit_numbers=tuple(n for _k, n in kits[row.id]),
            )
            for row, site, shipment_code in found
        ]

    def excursion(
        self, study: str, code: str, *, for_update: bool = False
    ) -> ExcursionRecord | None:
        query = (
            self._excursion_query(study)
            .where(ExcursionRow.code == code)
            .execution_options(populate_existing=True)
        )
        if for_update:
            query = query.with_for_update(of=ExcursionRow)
        found = self._session.execute(query).first()
        return None if found is None else self._excursion_records([found])[0]

    def excursions(
        self, study: str, *, sites: frozenset[str] | None = None
    ) -> list[ExcursionRecord]:
        query = self._excursion_query(study).order_by(
            ExcursionRow.reported_at.desc(), ExcursionRow.code
        )
        if sites is not None:
            query = query.where(SiteRow.code.in_(sorted(sites)))
        return self._excursion_records(self._session.execute(query).all())

    def resolve_excursion(self, excursion_id: int, resolution: str, at: datetime, by: str) -> None:
        self._session.execute(
            update(ExcursionRow)
            .where(ExcursionRow.id == excursion_id)
            .values(resolution=resolution, resolved_at=at, resolved_by=by)
            .execution_options(synchronize_session=False)
        )
