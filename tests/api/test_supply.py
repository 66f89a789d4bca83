"""Drug supply over the API and through its use cases: kit list, shipments and receipt,
dispensing (type from arm x visit, quantity from weight), replacements, resupply,
temperature excursions, blinded lookups, site scope, and no kit type or arm anywhere."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from app.adapters.db.audit import iter_chain
from app.adapters.db.models import DispensationRow, KitRow, OutboxRow, SubjectRow
from app.bootstrap import Container
from app.domain.access import Principal
from app.domain.dispensing import WeightOutOfRange
from app.domain.kits import KitStatus, damm_check_digit
from app.domain.roles import Role
from app.domain.subjects import Subject
from app.services import resupply, supply
from app.services.ports import KitRecord, ShipmentRecord
from app.services.randomization import generate_list, randomize, register_subject
from tests.api.conftest import Login
from tests.conftest import STUDIES_DIR, TEST_ACTOR, FreshDatabases

STUDY = "iris-7a"
API = f"/api/v1/studies/{STUDY}"
KIT_TYPES = ("KT_IL7", "KT_PBO")
ARMS = ("PLACEBO", "CYT107_QW", "CYT107_BIW")
STRATA = {"shock": "yes", "age": "lt65"}


# --- builders ------------------------------------------------------------------------------


def pharmacist(site: str = "FR01") -> Principal:
    return Principal(
        "test-pharmacist", Role.PHARMACIST, frozenset({STUDY}), {STUDY: frozenset({site})}
    )


SUPPLY_MANAGER = Principal("test-supply", Role.SUPPLY_MANAGER, frozenset({STUDY}))


def generate(container: Container) -> supply.KitGeneration:
    return supply.generate_kits(container.uow(TEST_ACTOR), STUDY)


def shipment_to(container: Container, site: str) -> ShipmentRecord:
    with container.uow(TEST_ACTOR) as uow:
        (found,) = uow.supply.shipments(STUDY, site=site)
    return found


def receive(container: Container, site: str = "FR01") -> ShipmentRecord:
    code = shipment_to(container, site).code
    return supply.receive_shipment(container.uow(TEST_ACTOR), pharmacist(site), STUDY, code)


def kits(container: Container, numbers: Iterable[str]) -> list[KitRecord]:
    with container.uow(TEST_ACTOR) as uow:
        return uow.supply.kits(STUDY, numbers=list(numbers))


def types_of(container: Container, numbers: Iterable[str]) -> list[str]:
    with container.uow(TEST_ACTOR) as uow:
        found = uow.supply.kits(STUDY, numbers=list(numbers))
        types = uow.supply.types_of(STUDY, [k.id for k in found])
    return [types[k.id] for k in found]


def stock(container: Container, site: str = "FR01") -> Counter[str]:
    with container.uow(TEST_ACTOR) as uow:
        return Counter(c.kit_type for c in uow.supply.stock(STUDY, KitStatus.AT_SITE, site=site))


def lose(container: Container, kit_type: str, keep: int, site: str = "FR01") -> None:
    """Mark kits of a type at the site lost until `keep` are left (a test-only shortcut)."""
    with container.uow(TEST_ACTOR) as uow:
        held = [c.kit_id for c in uow.supply.stock(STUDY, KitStatus.AT_SITE, site=site)]
        typed = [i for i, t in sorted(uow.supply.types_of(STUDY, held).items()) if t == kit_type]
        assert uow.supply.move_kits(
            STUDY, typed[: len(typed) - keep], KitStatus.AT_SITE, KitStatus.LOST
        )
        uow.commit()


EDC = Principal("test-edc", Role.EDC, frozenset({STUDY}))


def randomized(
    container: Container,
    subject_id: str,
    *,
    site: str = "FR01",
    days_ago: int = 0,
    weight: str | None = "70",
    strata: dict[str, str] = STRATA,
) -> tuple[Subject, str]:
    """A subject randomized through the use case (its first visit dispensed then, when the
    weight is given), moved `days_ago` days into the past; with its arm, for the checks."""
    with container.uow(TEST_ACTOR) as uow:
        missing = uow.lists.active(STUDY, "live") is None
    if missing:
        generate_list(container.uow(TEST_ACTOR), "test", STUDY)
    register_subject(container.uow(TEST_ACTOR), EDC, STUDY, subject_id, site, strata)
    randomize(
        container.uow(TEST_ACTOR),
        EDC,
        STUDY,
        subject_id,
        None if weight is None else Decimal(weight),
    )
    if days_ago:
        with container.session_factory() as session:
            row = session.scalars(
                select(SubjectRow).where(SubjectRow.subject_code == subject_id)
            ).one()
            assert row.randomized_at is not None
            row.randomized_at -= timedelta(days=days_ago)
            session.commit()
    with container.uow(TEST_ACTOR) as uow:
        subject = uow.subjects.get(STUDY, subject_id)
        assert subject is not None
        arm = uow.lists.arm_of(subject)
        assert arm is not None
    return subject, arm


def kit_type(container: Container, arm: str, visit: str) -> str:
    with container.uow(TEST_ACTOR) as uow:
        stored = uow.studies.get(STUDY)
        assert stored is not None
    return stored.study.dispensing.kit_type_by_arm_visit[(arm, visit)]


def held(container: Container, subject_id: str, visit: str = "D1") -> list[str]:
    """The kit numbers the subject holds from a visit."""
    with container.uow(TEST_ACTOR) as uow:
        subject = uow.subjects.get(STUDY, subject_id)
        assert subject is not None
        found = [d for d in uow.supply.dispensations(subject) if d.visit == visit]
    return [k.kit_number for d in found for k in d.kits if k.status is KitStatus.DISPENSED]


def registered(container: Container, subject_id: str, site: str = "FR01") -> Subject:
    with container.uow(TEST_ACTOR) as uow:
        subject = uow.subjects.add(STUDY, subject_id, site, STRATA, "live")
        uow.commit()
    return subject


def audit_text(container: Container) -> str:
    with container.session_factory() as session:
        return json.dumps([e.payload() for e in iter_chain(session, STUDY)], default=str)


def assert_blind(payload: Any) -> None:
    text = payload if isinstance(payload, str) else json.dumps(payload, default=str)
    for secret in (*KIT_TYPES, *ARMS):
        assert secret not in text, f"{secret} leaked"


def mistype(number: str) -> str:
    """The number with its check digit changed: no longer a kit number."""
    wrong = str((int(damm_check_digit(number[:-1])) + 1) % 10)
    return number[:-1] + wrong


@pytest.fixture
def kitted(loaded: Container) -> Container:
    """Both studies loaded, iris-7a's kits generated, FR01's initial shipment received."""
    generate(loaded)
    receive(loaded, "FR01")
    return loaded


# --- kit list ------------------------------------------------------------------------------


class TestKitGeneration:
    def test_kits_in_whole_lots_at_the_depot_and_initial_shipments(self, loaded: Container) -> None:
        result = generate(loaded)

        # 4 sites x (16 initial + 3 x 16 resupply) = 256 per type, rounded to 3 lots of 120.
        assert result.kits == 720
        assert result.lots == 6
        assert result.kits_by_depot == {"FR_DEPOT": 720}
        assert [s.site for s in result.shipments] == ["FR01", "FR02", "FR03"]  # FR04 inactive
        for shipment in result.shipments:
            assert shipment.kind == "initial"
            assert shipment.status == "in_transit"
            assert len(shipment.kit_numbers) == 32
            assert list(shipment.kit_numbers) == sorted(shipment.kit_numbers)
            assert Counter(types_of(loaded, shipment.kit_numbers)) == {"KT_IL7": 16, "KT_PBO": 16}
            assert {k.status for k in kits(loaded, shipment.kit_numbers)} == {KitStatus.IN_TRANSIT}

    def test_kit_types_are_stored_only_sealed(self, loaded: Container) -> None:
        generate(loaded)
        with loaded.session_factory() as session:
            rows = session.execute(select(KitRow.kit_number, KitRow.kit_type_sealed)).all()
            columns = [c.name for c in KitRow.__table__.columns]
        assert len(rows) == 720
        assert not any(b"KT_" in sealed for _, sealed in rows)
        assert "kit_type" not in columns
        with loaded.uow(TEST_ACTOR) as uow:
            depot = uow.supply.stock(STUDY, KitStatus.AT_DEPOT, depot="FR_DEPOT")
        assert Counter(c.kit_type for c in depot) == {"KT_IL7": 360 - 48, "KT_PBO": 360 - 48}

    def test_lots_and_expiry_do_not_tell_a_type(self, loaded: Container) -> None:
        generate(loaded)
        with loaded.session_factory() as session:
            numbers = list(session.scalars(select(KitRow.kit_number)))
        with loaded.uow(TEST_ACTOR) as uow:
            all_kits = uow.supply.kits(STUDY, numbers=numbers)
            types = uow.supply.types_of(STUDY, [k.id for k in all_kits])
        by_lot: dict[tuple[str, object], set[str]] = {}
        for kit in all_kits:
            by_lot.setdefault((kit.lot, kit.expiry_date), set()).add(types[kit.id])
        # Three lots, one per expiry date, each holding kits of every type: two kits of one
        # lot may be of either type.
        assert len(by_lot) == 3
        assert len({expiry for _lot, expiry in by_lot}) == 3
        assert all(found == set(KIT_TYPES) for found in by_lot.values())

    def test_generated_once(self, loaded: Container) -> None:
        generate(loaded)
        with pytest.raises(supply.KitsAlreadyGenerated):
            generate(loaded)

    def test_audited_without_kit_types(self, loaded: Container) -> None:
        generate(loaded)
        text = audit_text(loaded)
        assert '"kits.generated"' in text
        assert text.count('"shipment.created"') == 3
        assert_blind(text)

    def test_a_site_activated_later_gets_its_initial_shipment(self, loaded: Container) -> None:
        generate(loaded)
        assert supply.send_initial_shipments(loaded.uow(TEST_ACTOR), STUDY) == []


# --- shipments and receipt -----------------------------------------------------------------


class TestReceipt:
    def test_kits_usable_after_receipt_by_the_sites_pharmacist(
        self, client: TestClient, loaded: Container, login: Login
    ) -> None:
        generate(loaded)
        code = shipment_to(loaded, "FR01").code
        with loaded.uow(TEST_ACTOR) as uow:
            study = uow.studies.get(STUDY)
            assert study is not None
            assert not supply.first_visit_servable(uow, study.study, "FR01", None)

        response = client.post(
            f"{API}/shipments/{code}/receipt", headers=login("pharmacist", sites=["FR01"])
        )

        assert response.status_code == 200, response.text
        body = response.json()
        assert body["status"] == "received"
        assert body["shipment_id"] == code
        assert len(body["kit_numbers"]) == 32
        assert_blind(body)
        assert {k.status for k in kits(loaded, body["kit_numbers"])} == {KitStatus.AT_SITE}
        with loaded.uow(TEST_ACTOR) as uow:
            assert supply.first_visit_servable(uow, study.study, "FR01", None)

    def test_damaged_kits(self, client: TestClient, loaded: Container, login: Login) -> None:
        generate(loaded)
        shipment = shipment_to(loaded, "FR01")
        damaged = list(shipment.kit_numbers[:2])

        response = client.post(
            f"{API}/shipments/{shipment.code}/receipt",
            json={"damaged_kit_numbers": damaged},
            headers=login("pharmacist", sites=["FR01"]),
        )

        assert response.status_code == 200, response.text
        statuses = {k.kit_number: k.status for k in kits(loaded, shipment.kit_numbers)}
        assert [statuses[n] for n in damaged] == [KitStatus.DAMAGED] * 2
        assert Counter(statuses.values()) == {KitStatus.AT_SITE: 30, KitStatus.DAMAGED: 2}
        assert '"kits_damaged"' in audit_text(loaded)

    def test_received_once(self, client: TestClient, loaded: Container, login: Login) -> None:
        generate(loaded)
        code = shipment_to(loaded, "FR01").code
        headers = login("pharmacist", sites=["FR01"])
        assert client.post(f"{API}/shipments/{code}/receipt", headers=headers).status_code == 200

        again = client.post(f"{API}/shipments/{code}/receipt", headers=headers)

        assert again.status_code == 409
        assert again.json()["code"] == "shipment_already_received"

    def test_idempotent_retry_replays_the_first_answer(
        self, client: TestClient, loaded: Container, login: Login
    ) -> None:
        generate(loaded)
        code = shipment_to(loaded, "FR01").code
        headers = {**login("pharmacist", sites=["FR01"]), "Idempotency-Key": "receipt-1"}
        first = client.post(f"{API}/shipments/{code}/receipt", headers=headers)
        second = client.post(f"{API}/shipments/{code}/receipt", headers=headers)
        assert first.status_code == second.status_code == 200
        assert second.json() == first.json()
        assert second.headers.get("Idempotent-Replayed") == "true"

    def test_bad_kit_numbers(self, client: TestClient, loaded: Container, login: Login) -> None:
        generate(loaded)
        fr01, fr02 = shipment_to(loaded, "FR01"), shipment_to(loaded, "FR02")
        headers = login("pharmacist", sites=["FR01"])
        url = f"{API}/shipments/{fr01.code}/receipt"

        mistyped = client.post(
            url, json={"damaged_kit_numbers": [mistype(fr01.kit_numbers[0])]}, headers=headers
        )
        foreign = client.post(
            url, json={"damaged_kit_numbers": [fr02.kit_numbers[0]]}, headers=headers
        )

        assert (mistyped.status_code, mistyped.json()["code"]) == (422, "invalid_kit_number")
        assert (foreign.status_code, foreign.json()["code"]) == (422, "kit_not_in_shipment")
        assert shipment_to(loaded, "FR01").status == "in_transit"

    def test_another_sites_shipment_is_not_found(
        self, client: TestClient, loaded: Container, login: Login
    ) -> None:
        generate(loaded)
        code = shipment_to(loaded, "FR01").code
        headers = login("pharmacist", sites=["FR02"])

        receipt = client.post(f"{API}/shipments/{code}/receipt", headers=headers)
        read = client.get(f"{API}/shipments/{code}", headers=headers)
        listed = client.get(f"{API}/shipments", params={"site_id": "FR01"}, headers=headers)

        assert (receipt.status_code, receipt.json()["code"]) == (404, "shipment_not_found")
        assert read.status_code == 404
        assert (listed.status_code, listed.json()["code"]) == (404, "site_not_found")
        assert shipment_to(loaded, "FR01").status == "in_transit"

    def test_shipment_lists(self, client: TestClient, loaded: Container, login: Login) -> None:
        generate(loaded)
        own = client.get(f"{API}/shipments", headers=login("pharmacist", sites=["FR02"]))
        every = client.get(f"{API}/shipments", headers=login("supply_manager"))
        one = client.get(
            f"{API}/shipments", params={"site_id": "FR03"}, headers=login("supply_manager")
        )

        assert [s["site_id"] for s in own.json()["shipments"]] == ["FR02"]
        assert [s["site_id"] for s in every.json()["shipments"]] == ["FR01", "FR02", "FR03"]
        assert [s["site_id"] for s in one.json()["shipments"]] == ["FR03"]
        shipment = every.json()["shipments"][0]
        assert set(shipment) == {
            "shipment_id",
            "kind",
            "status",
            "site_id",
            "depot_id",
            "created_at",
            "received_at",
            "kit_count",
            "kit_numbers",
        }
        assert_blind(every.json())


# --- dispensing ----------------------------------------------------------------------------


def dispense_url(subject_id: str) -> str:
    return f"{API}/subjects/{subject_id}/dispensations"


class TestDispensing:
    def test_visit_kits_of_the_arms_type_in_the_weight_bands_quantity(
        self, client: TestClient, kitted: Container, login: Login
    ) -> None:
        _, arm = randomized(kitted, "S-001", days_ago=3)

        response = client.post(
            dispense_url("S-001"),
            json={"visit": "D4", "weight_kg": 71.5},
            headers=login("pharmacist", sites=["FR01"]),
        )

        assert response.status_code == 201, response.text
        body = response.json()
        assert set(body) == {"subject_id", "visit", "kits", "dispensed_at"}
        assert (body["subject_id"], body["visit"]) == ("S-001", "D4")
        numbers = [k["kit_number"] for k in body["kits"]]
        assert len(numbers) == 2  # 60 <= 71.5 < 90 kg
        assert numbers == sorted(numbers)
        assert all(set(k) == {"kit_number", "lot", "expiry"} for k in body["kits"])
        assert types_of(kitted, numbers) == [kit_type(kitted, arm, "D4")] * 2
        assert {(k.status, k.subject_id, k.visit) for k in kits(kitted, numbers)} == {
            (KitStatus.DISPENSED, "S-001", "D4")
        }
        assert_blind(body)

    def test_type_from_arm_and_visit_quantity_from_weight(self, kitted: Container) -> None:
        for i in range(6):  # a block holds every arm
            _, arm = randomized(kitted, f"S-{i}", weight="100")
            numbers = held(kitted, f"S-{i}")
            assert types_of(kitted, numbers) == [kit_type(kitted, arm, "D1")] * 3

    def test_double_dummy_table_over_the_visits(self, kitted: Container) -> None:
        _, arm = randomized(kitted, "S-001", days_ago=7, weight="50")
        with kitted.uow(TEST_ACTOR) as uow:
            stored = uow.studies.get(STUDY)
            subject = uow.subjects.get(STUDY, "S-001")
            assert stored is not None
            assert subject is not None
            on = subject.randomized_at.date() if subject.randomized_at else None
            assert on is not None
            for visit, day in (("D4", 3), ("D8", 7)):
                supply.dispense(
                    uow, stored.study, subject, arm, visit, Decimal(50), on + timedelta(days=day)
                )
            uow.commit()
        for visit in ("D1", "D4", "D8"):
            assert types_of(kitted, held(kitted, "S-001", visit)) == [kit_type(kitted, arm, visit)]

    def test_shipments_are_whole_sets_of_the_earliest_lot(self, kitted: Container) -> None:
        shipped = shipment_to(kitted, "FR02").kit_numbers
        found = kits(kitted, shipped)
        types = dict(zip(shipped, types_of(kitted, shipped), strict=True))
        by_lot = Counter((k.lot, types[k.kit_number]) for k in found)
        assert by_lot == {("L0001", t): 16 for t in KIT_TYPES}

    def test_each_visit_once(self, client: TestClient, kitted: Container, login: Login) -> None:
        randomized(kitted, "S-001", days_ago=3)
        headers = login("edc")
        body = {"visit": "D4", "weight_kg": 55}
        assert client.post(dispense_url("S-001"), json=body, headers=headers).status_code == 201

        again = client.post(dispense_url("S-001"), json=body, headers=headers)
        first = client.post(dispense_url("S-001"), json={**body, "visit": "D1"}, headers=headers)

        assert (again.status_code, again.json()["code"]) == (409, "visit_already_dispensed")
        assert (first.status_code, first.json()["code"]) == (409, "visit_already_dispensed")

    @pytest.mark.parametrize(
        ("days_ago", "visit"),
        [(3, "D8"), (0, "D4"), (5, "D4"), (3, "D99")],
        ids=["out-of-order", "too-early", "too-late", "unknown"],
    )
    def test_visit_order_and_windows(
        self, client: TestClient, kitted: Container, login: Login, days_ago: int, visit: str
    ) -> None:
        randomized(kitted, "S-001", days_ago=days_ago)

        response = client.post(
            dispense_url("S-001"), json={"visit": visit, "weight_kg": 55}, headers=login("edc")
        )

        assert (response.status_code, response.json()["code"]) == (409, "visit_not_allowed")

    @pytest.mark.parametrize("days_ago", [2, 4])
    def test_window_ends_are_included(
        self, client: TestClient, kitted: Container, login: Login, days_ago: int
    ) -> None:
        randomized(kitted, "S-001", days_ago=days_ago)  # D4: day 3, one day either side
        response = client.post(
            dispense_url("S-001"), json={"visit": "D4", "weight_kg": 55}, headers=login("edc")
        )
        assert response.status_code == 201, response.text

    @pytest.mark.parametrize("weight", [20, 900, 0, -5])
    def test_weight_outside_every_band(
        self, client: TestClient, kitted: Container, login: Login, weight: float
    ) -> None:
        # 900 kg answered validation_error before: the contract says weight_out_of_range.
        randomized(kitted, "S-001", days_ago=3)

        response = client.post(
            dispense_url("S-001"), json={"visit": "D4", "weight_kg": weight}, headers=login("edc")
        )

        assert (response.status_code, response.json()["code"]) == (422, "weight_out_of_range")

    def test_insufficient_supply(self, client: TestClient, kitted: Container, login: Login) -> None:
        _, arm = randomized(kitted, "S-001", days_ago=3)
        lose(kitted, kit_type(kitted, arm, "D4"), keep=1)

        response = client.post(
            dispense_url("S-001"), json={"visit": "D4", "weight_kg": 71.5}, headers=login("edc")
        )

        assert (response.status_code, response.json()["code"]) == (409, "insufficient_supply")
        assert_blind(response.json())
        assert held(kitted, "S-001", "D4") == []

    def test_refused_alike_when_the_other_arms_type_is_short(
        self, client: TestClient, kitted: Container, login: Login
    ) -> None:
        # The subject's own kit type is plentiful; another arm's is not: refused all the
        # same, so a refusal tells nothing of the subject's arm (and nothing is moved).
        _, arm = randomized(kitted, "S-001", days_ago=3)
        own = kit_type(kitted, arm, "D4")
        (other,) = set(KIT_TYPES) - {own}
        lose(kitted, other, keep=1)

        response = client.post(
            dispense_url("S-001"), json={"visit": "D4", "weight_kg": 71.5}, headers=login("edc")
        )

        assert (response.status_code, response.json()["code"]) == (409, "insufficient_supply")
        assert_blind(response.json())
        assert held(kitted, "S-001", "D4") == []
        # The supply manager is told and an emergency shipment of whole sets leaves at once.
        with kitted.session_factory() as session:
            notes = session.execute(select(OutboxRow.kind, OutboxRow.payload)).all()
            dispensations = session.execute(select(DispensationRow.visit)).scalars().all()
        assert notes == [
            ("supply.visit_refused", {"site": "FR01", "subject_id": "S-001", "visit": "D4"})
        ]
        assert dispensations == ["D1"]  # the refused visit left nothing behind
        shipments = _shipments(kitted)
        assert [s.kind for s in shipments] == ["initial", "emergency"]
        assert len(set(Counter(types_of(kitted, shipments[1].kit_numbers)).values())) == 1
        text = audit_text(kitted)
        assert '"supply.visit_refused"' in text
        assert_blind(text)

    def test_kits_in_the_do_not_dispense_window_are_never_handed_out(
        self, client: TestClient, kitted: Container, login: Login
    ) -> None:
        randomized(kitted, "S-001", days_ago=3)
        soon = datetime.now(UTC).date() + timedelta(days=10)
        with kitted.session_factory() as session:
            session.execute(
                update(KitRow).where(KitRow.status == "at_site").values(expiry_date=soon)
            )
            session.commit()

        response = client.post(
            dispense_url("S-001"), json={"visit": "D4", "weight_kg": 55}, headers=login("edc")
        )

        assert (response.status_code, response.json()["code"]) == (409, "insufficient_supply")

    def test_subject_must_be_randomized_and_in_scope(
        self, client: TestClient, kitted: Container, login: Login
    ) -> None:
        registered(kitted, "S-REG")
        randomized(kitted, "S-001", days_ago=3)
        body = {"visit": "D4", "weight_kg": 55}

        not_randomized = client.post(dispense_url("S-REG"), json=body, headers=login("edc"))
        elsewhere = client.post(
            dispense_url("S-001"), json=body, headers=login("pharmacist", sites=["FR02"])
        )
        unknown = client.post(dispense_url("S-404"), json=body, headers=login("edc"))
        other_study = client.post(
            "/api/v1/studies/iris-7b/subjects/S-001/dispensations",
            json=body,
            headers=login("edc"),
        )

        assert (not_randomized.status_code, not_randomized.json()["code"]) == (
            409,
            "subject_not_randomized",
        )
        assert (elsewhere.status_code, elsewhere.json()["code"]) == (404, "subject_not_found")
        assert unknown.status_code == other_study.status_code == 404

    def test_request_fields_are_checked(
        self, client: TestClient, kitted: Container, login: Login
    ) -> None:
        randomized(kitted, "S-001", days_ago=3)
        headers = login("edc")
        for body in (
            {"visit": "D4"},
            {"visit": "D4", "weight_kg": 55, "kit_type": "KT_IL7"},
            {"visit": "D4", "weight_kg": "heavy"},
        ):
            response = client.post(dispense_url("S-001"), json=body, headers=headers)
            assert (response.status_code, response.json()["code"]) == (422, "validation_error")

    def test_idempotent_retry(self, client: TestClient, kitted: Container, login: Login) -> None:
        randomized(kitted, "S-001", days_ago=3)
        headers = {**login("edc"), "Idempotency-Key": "dispense-S-001-D4"}
        body = {"visit": "D4", "weight_kg": 55}

        first = client.post(dispense_url("S-001"), json=body, headers=headers)
        second = client.post(dispense_url("S-001"), json=body, headers=headers)
        other = client.post(dispense_url("S-001"), json={**body, "weight_kg": 56}, headers=headers)

        assert first.status_code == second.status_code == 201
        assert second.json() == first.json()
        assert (other.status_code, other.json()["code"]) == (422, "idempotency_key_reused")

    def test_audited_blind(self, client: TestClient, kitted: Container, login: Login) -> None:
        randomized(kitted, "S-001", days_ago=3)
        client.post(
            dispense_url("S-001"), json={"visit": "D4", "weight_kg": 55}, headers=login("edc")
        )
        text = audit_text(kitted)
        assert text.count('"dispensation.created"') == 2
        assert_blind(text)


class TestFirstVisitServable:
    def servable(self, container: Container, weight: str | None, site: str = "FR01") -> bool:
        with container.uow(TEST_ACTOR) as uow:
            stored = uow.studies.get(STUDY)
            assert stored is not None
            return supply.first_visit_servable(
                uow, stored.study, site, None if weight is None else Decimal(weight)
            )

    def test_every_arm_must_be_servable(self, kitted: Container) -> None:
        assert self.servable(kitted, None)
        assert not self.servable(kitted, None, site="FR02")  # not received yet
        lose(kitted, "KT_PBO", keep=3)
        assert not self.servable(kitted, None)  # the largest band needs 4
        assert self.servable(kitted, "100")  # 3 kits
        assert not self.servable(kitted, "140")
        lose(kitted, "KT_PBO", keep=0)
        assert not self.servable(kitted, "40")  # the placebo arm could not start

    def test_weight_outside_every_band(self, kitted: Container) -> None:
        with pytest.raises(WeightOutOfRange):
            self.servable(kitted, "20")

    def test_randomization_is_refused_when_the_site_cannot_serve_every_arm(
        self, client: TestClient, kitted: Container, login: Login
    ) -> None:
        lose(kitted, "KT_IL7", keep=0)
        generate_list(kitted.uow(TEST_ACTOR), "test", STUDY)
        register_subject(kitted.uow(TEST_ACTOR), EDC, STUDY, "S-001", "FR01", STRATA)

        response = client.post(
            f"{API}/subjects/S-001/randomization", json={"weight_kg": 55}, headers=login("edc")
        )

        assert (response.status_code, response.json()["code"]) == (409, "insufficient_supply")
        assert_blind(response.json())

    @pytest.mark.parametrize("weight", [900, -1])
    def test_randomization_with_a_weight_outside_every_band(
        self, client: TestClient, kitted: Container, login: Login, weight: float
    ) -> None:
        generate_list(kitted.uow(TEST_ACTOR), "test", STUDY)
        register_subject(kitted.uow(TEST_ACTOR), EDC, STUDY, "S-001", "FR01", STRATA)

        response = client.post(
            f"{API}/subjects/S-001/randomization", json={"weight_kg": weight}, headers=login("edc")
        )

        assert (response.status_code, response.json()["code"]) == (422, "weight_out_of_range")

    def test_before_the_initial_shipment_is_received_the_refusal_names_it(
        self, client: TestClient, loaded: Container, login: Login
    ) -> None:
        # After quickstart the first randomization was told "resupply is needed".
        generate(loaded)
        generate_list(loaded.uow(TEST_ACTOR), "test", STUDY)
        register_subject(loaded.uow(TEST_ACTOR), EDC, STUDY, "S-001", "FR01", STRATA)

        response = client.post(
            f"{API}/subjects/S-001/randomization", json={"weight_kg": 70}, headers=login("edc")
        )

        assert (response.status_code, response.json()["code"]) == (409, "insufficient_supply")
        assert "receipt of shipment SH-FR01-001" in response.json()["detail"]
        assert_blind(response.json())


def review(container: Container, site: str = "FR01") -> ShipmentRecord | None:
    """The resupply review of one site, as the daily review runs it (committed)."""
    with container.uow(TEST_ACTOR) as uow:
        stored = uow.studies.get(STUDY)
        assert stored is not None
        found = resupply.review_site(
            uow, stored.study, site, datetime.now(UTC), supply.SecretsRandom()
        )
        uow.commit()
    return found


class TestResupply:
    def test_a_dispensation_never_ships_the_daily_review_ships_whole_sets(
        self, client: TestClient, kitted: Container, login: Login
    ) -> None:
        _, arm = randomized(kitted, "S-001", days_ago=3, weight="50")
        short = kit_type(kitted, arm, "D4")
        lose(kitted, short, keep=9)

        response = client.post(
            dispense_url("S-001"), json={"visit": "D4", "weight_kg": 71.5}, headers=login("edc")
        )

        assert response.status_code == 201
        assert [s.kind for s in _shipments(kitted)] == ["initial"]  # not at the dispensation
        shipped = resupply.daily_review(kitted.uow(TEST_ACTOR), STUDY)
        assert shipped is not None
        assert [s.site for s in shipped] == ["FR01"]  # FR02, FR03 hold their initial kits
        shipments = _shipments(kitted)
        assert [s.kind for s in shipments] == ["initial", "resupply"]
        assert shipments[1].code == "SH-FR01-002"
        # About 10 of 32 kits gone: a type that took 2/3 of them would hold 9, short of 8
        # (the trigger) + 2/3 of the coming demand (D8 and one arrival, 2 kits each, whatever
        # the arms): the base, resupply - trigger = 8 sets.
        assert Counter(types_of(kitted, shipments[1].kit_numbers)) == {t: 8 for t in KIT_TYPES}
        text = audit_text(kitted)
        assert '"resupply.reviewed"' in text
        assert_blind(text)

    def test_once_a_day(self, kitted: Container) -> None:
        lose(kitted, "KT_IL7", keep=0)

        first = resupply.daily_review(kitted.uow(TEST_ACTOR), STUDY)
        again = resupply.daily_review(kitted.uow(TEST_ACTOR), STUDY)

        assert first is not None
        assert [s.site for s in first] == ["FR01"]
        assert again is None
        assert [s.kind for s in _shipments(kitted)] == ["initial", "resupply"]

    def test_the_subjects_coming_demand_counts(self, kitted: Container) -> None:
        # 12 of 32 kits gone: a type that took 2/3 of them would hold 8, the trigger, enough
        # until the coming demand is counted (three subjects randomized today: their D4 and
        # three arrivals expected, 1 kit each: 2/3 of 6 more).
        for subject_id in ("S-001", "S-002", "S-003"):
            randomized(kitted, subject_id, weight="50")
        for kit_type in KIT_TYPES:
            lose(kitted, kit_type, keep=10)
        assert set(stock(kitted).values()) == {10}

        shipment = review(kitted)

        assert shipment is not None
        assert Counter(types_of(kitted, shipment.kit_numbers)) == {t: 8 for t in KIT_TYPES}

    def test_stock_in_transit_counts(self, kitted: Container) -> None:
        # 16 of 32 kits gone: a type that took 2/3 of them (11) would hold 5, below the
        # trigger of 8: the base, 8 sets; then 13 are held that way.
        lose(kitted, "KT_IL7", keep=7)
        lose(kitted, "KT_PBO", keep=9)

        first = review(kitted)
        second = review(kitted)

        assert first is not None
        assert Counter(types_of(kitted, first.kit_numbers)) == {"KT_IL7": 8, "KT_PBO": 8}
        assert second is None

    def test_an_inactive_site_is_not_resupplied(self, kitted: Container) -> None:
        assert review(kitted, "FR04") is None

    def test_a_depot_without_a_whole_set_ships_nothing_and_tells_the_supply_manager(
        self, kitted: Container
    ) -> None:
        lose(kitted, "KT_IL7", keep=0)
        with kitted.session_factory() as session:
            depot = (
                session.execute(select(KitRow.id).where(KitRow.status == "at_depot"))
                .scalars()
                .all()
            )
        with kitted.uow(TEST_ACTOR) as uow:
            types = uow.supply.types_of(STUDY, list(depot))
            pbo = [i for i, t in sorted(types.items()) if t == "KT_PBO"]
            assert uow.supply.move_kits(STUDY, pbo, KitStatus.AT_DEPOT, KitStatus.DAMAGED)
            uow.commit()

        assert review(kitted) is None

        assert [s.kind for s in _shipments(kitted)] == ["initial"]
        text = audit_text(kitted)
        assert '"shipment.not_sent"' in text
        assert_blind(text)
        with kitted.session_factory() as session:
            notes = session.execute(select(OutboxRow.kind, OutboxRow.payload)).all()
        assert [(kind, p["site"], p["sets_short"]) for kind, p in notes] == [
            ("supply.depot_short", "FR01", 8)
        ]
        assert_blind([p for _, p in notes])


class TestExpiry:
    def test_kits_past_their_date_expire_and_the_review_resupplies(self, kitted: Container) -> None:
        yesterday = datetime.now(UTC).date() - timedelta(days=1)
        at_fr01 = list(shipment_to(kitted, "FR01").kit_numbers)
        with kitted.session_factory() as session:
            session.execute(
                update(KitRow).where(KitRow.kit_number.in_(at_fr01)).values(expiry_date=yesterday)
            )
            session.commit()

        expired = supply.expire_kits(kitted.uow(TEST_ACTOR), STUDY)

        assert expired == {"FR01": sorted(at_fr01)}
        assert {k.status for k in kits(kitted, at_fr01)} == {KitStatus.EXPIRED}
        assert [s.kind for s in _shipments(kitted)] == ["initial"]
        assert review(kitted) is not None
        assert [s.kind for s in _shipments(kitted)] == ["initial", "resupply"]
        assert supply.expire_kits(kitted.uow(TEST_ACTOR), STUDY) == {}
        text = audit_text(kitted)
        assert '"kits.expired"' in text
        assert_blind(text)


def _shipments(container: Container, site: str = "FR01") -> list[ShipmentRecord]:
    with container.uow(TEST_ACTOR) as uow:
        return uow.supply.shipments(STUDY, site=site)


class TestReplacement:
    def url(self, subject_id: str = "S-001", visit: str = "D1") -> str:
        return f"{API}/subjects/{subject_id}/dispensations/{visit}/replacements"

    def test_a_kit_of_the_same_type_replaces_a_damaged_one(
        self, client: TestClient, kitted: Container, login: Login
    ) -> None:
        _, arm = randomized(kitted, "S-001")
        old = held(kitted, "S-001")[0]

        response = client.post(
            self.url(),
            json={"kit_number": old, "reason": "damaged"},
            headers=login("pharmacist", sites=["FR01"]),
        )

        assert response.status_code == 201, response.text
        body = response.json()
        new = body["kit"]["kit_number"]
        assert (body["replaced_kit_number"], body["reason"], body["visit"]) == (
            old,
            "damaged",
            "D1",
        )
        assert new != old
        assert types_of(kitted, [old, new]) == [kit_type(kitted, arm, "D1")] * 2
        statuses = {k.kit_number: (k.status, k.visit) for k in kits(kitted, [old, new])}
        assert statuses == {old: (KitStatus.RETURNED, "D1"), new: (KitStatus.DISPENSED, "D1")}
        assert new in held(kitted, "S-001")
        assert old not in held(kitted, "S-001")
        text = audit_text(kitted)
        assert '"kit.replaced"' in text
        assert '"damaged"' in text
        assert_blind(text)
        assert_blind(body)

    def test_only_a_kit_held_from_that_visit(
        self, client: TestClient, kitted: Container, login: Login
    ) -> None:
        randomized(kitted, "S-001")
        old = held(kitted, "S-001")[0]
        other = shipment_to(kitted, "FR02").kit_numbers[0]
        headers = login("pharmacist", sites=["FR01"])

        def replace(kit_number: str, visit: str = "D1", reason: str = "lost") -> Any:
            return client.post(
                self.url(visit=visit),
                json={"kit_number": kit_number, "reason": reason},
                headers=headers,
            )

        undispensed = replace(old, visit="D4")
        foreign = replace(other)
        mistyped = replace(mistype(old))
        bad_reason = replace(old, reason="stolen")
        assert replace(old).status_code == 201
        twice = replace(old)

        assert (undispensed.status_code, undispensed.json()["code"]) == (
            409,
            "visit_not_dispensed",
        )
        assert (foreign.status_code, foreign.json()["code"]) == (
            409,
            "kit_not_dispensed_at_visit",
        )
        assert (mistyped.status_code, mistyped.json()["code"]) == (422, "invalid_kit_number")
        assert bad_reason.status_code == 422
        assert (twice.status_code, twice.json()["code"]) == (409, "kit_not_dispensed_at_visit")


# --- temperature excursions ----------------------------------------------------------------


class TestExcursions:
    def report(
        self, client: TestClient, login: Login, body: dict[str, Any], site: str = "FR01"
    ) -> Any:
        return client.post(
            f"{API}/excursions", json=body, headers=login("pharmacist", sites=[site])
        )

    def resolve(self, client: TestClient, login: Login, code: str, decision: str) -> Any:
        return client.post(
            f"{API}/excursions/{code}/resolution",
            json={"decision": decision, "reason": "stability data reviewed"},
            headers=login("supply_manager"),
        )

    def test_quarantined_then_released(
        self, client: TestClient, kitted: Container, login: Login
    ) -> None:
        numbers = list(shipment_to(kitted, "FR01").kit_numbers[:3])

        reported = self.report(
            client,
            login,
            {"site_id": "FR01", "kit_numbers": numbers, "description": "fridge at 14 °C for 3 h"},
        )

        assert reported.status_code == 201, reported.text
        body = reported.json()
        assert (body["status"], body["site_id"], body["kit_numbers"]) == (
            "open",
            "FR01",
            sorted(numbers),
        )
        held = kits(kitted, numbers)
        assert {(k.status, k.quarantined_from) for k in held} == {
            (KitStatus.QUARANTINED, KitStatus.AT_SITE)
        }

        released = self.resolve(client, login, body["excursion_id"], "release")

        assert released.status_code == 200, released.text
        assert released.json()["status"] == "released"
        assert {(k.status, k.quarantined_from) for k in kits(kitted, numbers)} == {
            (KitStatus.AT_SITE, None)
        }
        again = self.resolve(client, login, body["excursion_id"], "reject")
        assert (again.status_code, again.json()["code"]) == (409, "excursion_already_resolved")
        text = audit_text(kitted)
        assert '"excursion.reported"' in text
        assert '"excursion.released"' in text
        assert_blind(text)

    def test_rejected_kits_are_written_off(
        self, client: TestClient, kitted: Container, login: Login
    ) -> None:
        numbers = list(shipment_to(kitted, "FR01").kit_numbers[:2])
        code = self.report(
            client, login, {"site_id": "FR01", "kit_numbers": numbers, "description": "hot"}
        ).json()["excursion_id"]

        rejected = self.resolve(client, login, code, "reject")

        assert rejected.json()["status"] == "rejected"
        assert {k.status for k in kits(kitted, numbers)} == {KitStatus.DESTROYED}

    def test_a_whole_shipment_in_transit(
        self, client: TestClient, kitted: Container, login: Login
    ) -> None:
        shipment = shipment_to(kitted, "FR02")

        reported = self.report(
            client,
            login,
            {"shipment_id": shipment.code, "description": "logger alarm in the truck"},
            site="FR02",
        )

        assert reported.status_code == 201, reported.text
        assert reported.json()["kit_numbers"] == list(shipment.kit_numbers)
        assert {(k.status, k.quarantined_from) for k in kits(kitted, shipment.kit_numbers)} == {
            (KitStatus.QUARANTINED, KitStatus.IN_TRANSIT)
        }
        self.resolve(client, login, reported.json()["excursion_id"], "release")
        assert {k.status for k in kits(kitted, shipment.kit_numbers)} == {KitStatus.AT_SITE}

    def test_quarantined_kits_are_not_dispensed(
        self, client: TestClient, kitted: Container, login: Login
    ) -> None:
        randomized(kitted, "S-001", days_ago=3, weight="50")
        with kitted.uow(TEST_ACTOR) as uow:
            at_site = [
                k.kit_number
                for k in uow.supply.kits(STUDY, sites=frozenset({"FR01"}))
                if k.status is KitStatus.AT_SITE
            ]
        self.report(
            client, login, {"site_id": "FR01", "kit_numbers": at_site, "description": "power cut"}
        )

        response = client.post(
            dispense_url("S-001"), json={"visit": "D4", "weight_kg": 50}, headers=login("edc")
        )

        assert (response.status_code, response.json()["code"]) == (409, "insufficient_supply")

    def test_scope_and_rules(self, client: TestClient, kitted: Container, login: Login) -> None:
        fr01 = list(shipment_to(kitted, "FR01").kit_numbers[:1])
        fr02_shipment = shipment_to(kitted, "FR02").code

        elsewhere = self.report(
            client, login, {"site_id": "FR01", "kit_numbers": fr01, "description": "x"}, "FR02"
        )
        foreign_kit = self.report(
            client, login, {"site_id": "FR02", "kit_numbers": fr01, "description": "x"}, "FR02"
        )
        foreign_shipment = self.report(
            client, login, {"shipment_id": fr02_shipment, "description": "x"}
        )
        both = self.report(
            client,
            login,
            {"site_id": "FR01", "kit_numbers": fr01, "shipment_id": "SH-1", "description": "x"},
        )
        no_site = self.report(client, login, {"kit_numbers": fr01, "description": "x"})
        pharmacist_decides = client.post(
            f"{API}/excursions/EX-1/resolution",
            json={"decision": "release", "reason": "x"},
            headers=login("pharmacist", sites=["FR01"]),
        )
        unknown = self.resolve(client, login, "EX-UNKNOWN", "release")

        assert (elsewhere.status_code, elsewhere.json()["code"]) == (404, "site_not_found")
        assert (foreign_kit.status_code, foreign_kit.json()["code"]) == (404, "kit_not_found")
        assert (foreign_shipment.status_code, foreign_shipment.json()["code"]) == (
            404,
            "shipment_not_found",
        )
        assert both.status_code == no_site.status_code == 422
        assert pharmacist_decides.status_code == 403
        assert (unknown.status_code, unknown.json()["code"]) == (404, "excursion_not_found")

    def test_a_dispensed_kit_cannot_be_quarantined(
        self, client: TestClient, kitted: Container, login: Login
    ) -> None:
        randomized(kitted, "S-001")
        response = self.report(
            client,
            login,
            {"site_id": "FR01", "kit_numbers": held(kitted, "S-001")[:1], "description": "x"},
        )
        assert (response.status_code, response.json()["code"]) == (409, "invalid_kit_transition")


# --- lookups -------------------------------------------------------------------------------


class TestLookups:
    def test_kit_record_is_blinded(
        self, client: TestClient, kitted: Container, login: Login
    ) -> None:
        randomized(kitted, "S-001")
        number = held(kitted, "S-001")[0]

        response = client.get(f"{API}/kits/{number}", headers=login("pharmacist", sites=["FR01"]))

        assert response.status_code == 200
        body = response.json()
        assert set(body) == {
            "kit_number",
            "status",
            "site_id",
            "depot_id",
            "subject_id",
            "visit",
            "lot",
            "expiry",
        }
        assert (body["status"], body["site_id"], body["subject_id"], body["visit"]) == (
            "dispensed",
            "FR01",
            "S-001",
            "D1",
        )
        assert_blind(body)
        spaced = f"{number[:4]} {number[4:]}"
        assert client.get(f"{API}/kits/{spaced}", headers=login("investigator")).status_code == 200

    def test_mistyped_number(self, client: TestClient, kitted: Container, login: Login) -> None:
        number = shipment_to(kitted, "FR01").kit_numbers[0]
        headers = login("pharmacist", sites=["FR01"])
        for typed in (mistype(number), number[:-1], "ABCDEFGH"):
            response = client.get(f"{API}/kits/{typed}", headers=headers)
            assert (response.status_code, response.json()["code"]) == (422, "invalid_kit_number")

    def test_other_sites_and_depot_kits_are_not_found_by_site_roles(
        self, client: TestClient, kitted: Container, login: Login
    ) -> None:
        fr02 = shipment_to(kitted, "FR02").kit_numbers[0]
        with kitted.uow(TEST_ACTOR) as uow:
            depot = uow.supply.stock(STUDY, KitStatus.AT_DEPOT, depot="FR_DEPOT")[0]
            (depot_kit,) = uow.supply.kits(STUDY, ids=[depot.kit_id])
        pharmacist_headers = login("pharmacist", sites=["FR01"])

        for number in (fr02, depot_kit.kit_number):
            response = client.get(f"{API}/kits/{number}", headers=pharmacist_headers)
            assert (response.status_code, response.json()["code"]) == (404, "kit_not_found")
        manager = client.get(f"{API}/kits/{depot_kit.kit_number}", headers=login("supply_manager"))
        assert manager.status_code == 200
        assert (manager.json()["status"], manager.json()["site_id"]) == ("at_depot", None)
        assert manager.json()["depot_id"] == "FR_DEPOT"

    def test_inventory_counts_by_status(
        self, client: TestClient, kitted: Container, login: Login
    ) -> None:
        randomized(kitted, "S-001", weight="100")

        own = client.get(f"{API}/sites/FR01/inventory", headers=login("pharmacist", sites=["FR01"]))
        other = client.get(
            f"{API}/sites/FR02/inventory", headers=login("pharmacist", sites=["FR01"])
        )
        manager = client.get(f"{API}/sites/FR02/inventory", headers=login("supply_manager"))
        unknown = client.get(f"{API}/sites/XX99/inventory", headers=login("supply_manager"))

        assert own.status_code == 200
        counts = own.json()["counts"]
        assert (counts["at_site"], counts["dispensed"], counts["in_transit"]) == (29, 3, 0)
        assert set(counts) == {s.value for s in KitStatus} - {"at_depot"}
        assert_blind(own.json())
        assert (other.status_code, other.json()["code"]) == (404, "site_not_found")
        assert manager.json()["counts"]["in_transit"] == 32
        assert unknown.status_code == 404

    def test_foreign_study_is_not_found(
        self, client: TestClient, kitted: Container, login: Login
    ) -> None:
        number = shipment_to(kitted, "FR01").kit_numbers[0]
        headers = login("supply_manager", studies=["iris-7b"])
        assert client.get(f"{API}/kits/{number}", headers=headers).status_code == 404
        assert client.get(f"{API}/sites/FR01/inventory", headers=headers).status_code == 404
        assert client.get(f"{API}/shipments", headers=headers).status_code == 404


# --- the command line ----------------------------------------------------------------------


class TestKitsCommand:
    def test_generate_then_ship_initial(
        self, backend: str, fresh_databases: FreshDatabases, tmp_path: Path
    ) -> None:
        from typer.testing import CliRunner

        from app.adapters.cli import kits as kits_cli
        from app.adapters.cli.main import app as iwrs

        env = {
            "IWRS_DATABASE_URL": fresh_databases.create(backend),
            "IWRS_KEYS_DIR": str(tmp_path / "keys"),
        }
        runner = CliRunner()
        for args in (
            ["keys", "init"],
            ["db", "upgrade"],
            ["studies", "load", str(STUDIES_DIR / "iris-7a.toml")],
        ):
            assert runner.invoke(iwrs, args, env=env).exit_code == 0

        made = runner.invoke(kits_cli.app, ["generate", "--study", STUDY], env=env)
        again = runner.invoke(kits_cli.app, ["generate", "--study", STUDY], env=env)
        initial = runner.invoke(kits_cli.app, ["ship-initial", "--study", STUDY], env=env)
        unknown = runner.invoke(kits_cli.app, ["generate", "--study", "nope"], env=env)
        expire = runner.invoke(kits_cli.app, ["expire", "--study", STUDY], env=env)

        assert made.exit_code == 0, made.output
        assert "720 kits in 6 lots" in made.output
        assert "shipment SH-FR01-001 to FR01: 32 kits in transit" in made.output
        assert_blind(made.output)
        assert again.exit_code == 1
        assert "has its kits already" in again.output
        assert initial.exit_code == 0
        assert "every active site has had its initial shipment" in initial.output
        assert unknown.exit_code == 1
        assert (expire.exit_code, expire.output.strip()) == (0, "no kit has expired")


# --- the authorization matrix's rows for these routes --------------------------------------

_KIT = "12345671"  # a well-formed kit number of no kit


def _scoped(action_roles: set[Role], own_status: int) -> Any:
    def expect(role: Role, own: bool) -> int:
        if role not in action_roles:
            return 403
        return own_status if own else 404

    return expect


def _post(action_roles: set[Role]) -> Any:
    """A POST without a body: refused (403) before it is read, else 422."""
    return lambda role, own: 422 if role in action_roles else 403


_DISPENSERS = {Role.EDC, Role.INVESTIGATOR, Role.PHARMACIST}
MATRIX_ROWS: dict[tuple[str, str], tuple[str, Any]] = {
    ("POST", "/api/v1/studies/{study}/subjects/{subject_id}/dispensations"): (
        "/api/v1/studies/{study}/subjects/S-1/dispensations",
        _post(_DISPENSERS),
    ),
    ("POST", "/api/v1/studies/{study}/subjects/{subject_id}/dispensations/{visit}/replacements"): (
        "/api/v1/studies/{study}/subjects/S-1/dispensations/D1/replacements",
        _post(_DISPENSERS),
    ),
    ("GET", "/api/v1/studies/{study}/kits/{kit_number}"): (
        f"/api/v1/studies/{{study}}/kits/{_KIT}",
        _scoped({Role.INVESTIGATOR, Role.PHARMACIST, Role.SUPPLY_MANAGER}, 404),
    ),
    ("GET", "/api/v1/studies/{study}/sites/{site_id}/inventory"): (
        "/api/v1/studies/{study}/sites/FR01/inventory",
        _scoped({Role.PHARMACIST, Role.SUPPLY_MANAGER}, 200),
    ),
    ("GET", "/api/v1/studies/{study}/sites/{site_id}/kits-expected-back"): (
        "/api/v1/studies/{study}/sites/FR01/kits-expected-back",
        _scoped({Role.PHARMACIST, Role.SUPPLY_MANAGER}, 200),
    ),
    ("GET", "/api/v1/studies/{study}/shipments"): (
        "/api/v1/studies/{study}/shipments",
        _scoped({Role.PHARMACIST, Role.SUPPLY_MANAGER}, 200),
    ),
    ("GET", "/api/v1/studies/{study}/shipments/{shipment_id}"): (
        "/api/v1/studies/{study}/shipments/SH-FR01-001",
        _scoped({Role.PHARMACIST, Role.SUPPLY_MANAGER}, 404),
    ),
    ("POST", "/api/v1/studies/{study}/shipments/{shipment_id}/receipt"): (
        "/api/v1/studies/{study}/shipments/SH-FR01-001/receipt",
        _scoped({Role.PHARMACIST}, 404),
    ),
    ("POST", "/api/v1/studies/{study}/excursions"): (
        "/api/v1/studies/{study}/excursions",
        _post({Role.PHARMACIST}),
    ),
    ("POST", "/api/v1/studies/{study}/excursions/{excursion_id}/resolution"): (
        "/api/v1/studies/{study}/excursions/EX-1/resolution",
        _post({Role.SUPPLY_MANAGER}),
    ),
}


def test_matrix_rows_cover_every_supply_route(client: TestClient) -> None:
    from app.adapters.api.introspect import api_routes

    app = client.app
    routes = {
        (r.method, r.path)
        for r in api_routes(app)  # type: ignore[arg-type]
        if r.action is not None and "supply" in str(r)
    }
    supply_paths = {
        (r.method, r.path)
        for r in api_routes(app)  # type: ignore[arg-type]
        if any(
            p in r.path
            for p in ("/kits", "/inventory", "/shipments", "/excursions", "/dispensations")
        )
    }
    assert supply_paths == set(MATRIX_ROWS), routes


@pytest.mark.parametrize("role", list(Role), ids=lambda r: r.value)
def test_matrix(role: Role, client: TestClient, login: Login) -> None:
    headers = login(role, studies=[STUDY])
    failures = []
    for (method, _route), (template, expect) in MATRIX_ROWS.items():
        for own in (True, False):
            path = template.replace("{study}", STUDY if own else "iris-7b")
            got = client.request(method, path, headers=headers).status_code
            want = expect(role, own)
            if got != want:
                failures.append(f"{role.value} {method} {path}: got {got}, want {want}")
    assert not failures, "\n".join(failures)
