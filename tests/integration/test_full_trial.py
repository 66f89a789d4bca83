"""Issue 7's "done when": a scripted full trial of both example studies, every visit.

Day by day on a controlled clock, through the HTTP API as the EDC system, the site
pharmacists and the supply manager would: the pharmacists receive every shipment in transit
each morning (what the daily resupply review shipped the day before), subjects arrive over
the first days at every active site and are randomized with their weight (the first visit's
kits come with it), and every subject is dosed at each visit on its due day with a weight
that drifts across a band limit. Some kits of the first site of each study are short-dated,
so the do-not-dispense window matters mid-trial.

Then, from the unblinded records: every subject got every visit, each time the kit type of
its arm x visit in the quantity of its weight band, no kit past (or inside) the
do-not-dispense window, no kit twice; no dispensing or randomization was ever refused for
supply; and no blinded response carried a kit type or an arm.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import update

from app.adapters.db.models import KitRow
from app.bootstrap import Container
from app.domain.dispensing import quantity_for_weight
from app.domain.kits import KitStatus
from app.domain.study import Study
from app.services.housekeeping import housekeeping
from app.services.randomization import generate_list
from app.services.supply import generate_kits
from tests.api import conftest as api_fixtures
from tests.api.conftest import Login
from tests.conftest import TEST_ACTOR

STUDIES = ("iris-7a", "iris-7b")
SUBJECTS_PER_STUDY = 6
ARRIVAL_DAYS = (0, 0, 1, 2, 4, 6)
BASE_WEIGHTS = ("48.0", "58.5", "62.0", "75.0", "88.5", "59.0")
SHORT_DATED_PER_TYPE = 3  # at the first site of each study, expiring on day 33

# The API fixtures (tests/api/conftest.py), which this directory's conftest does not have.
loaded = api_fixtures.loaded
client = api_fixtures.client
make_client = api_fixtures.make_client
login = api_fixtures.login


class SteppedClock:
    """The container's clock: a fixed noon (UTC) moved forward a day at a time."""

    def __init__(self, start: datetime) -> None:
        self.start = start
        self.day = 0

    def now(self) -> datetime:
        return self.start + timedelta(days=self.day)

    def today(self) -> date:
        return self.now().date()


@dataclass
class TrialSubject:
    study: str
    subject_id: str
    site: str
    base_weight: Decimal
    arrival_day: int
    strata: dict[str, str]
    randomized_day: int | None = None
    # visit -> (weight given, date dispensed, kit numbers in the response)
    given: dict[str, tuple[Decimal, date, list[str]]] = field(default_factory=dict)

    def weight(self, visit_index: int) -> Decimal:
        return self.base_weight + Decimal(visit_index % 3)  # 58.5 -> 60.5 crosses a band


@dataclass
class Blinded:
    """Every blinded response of the trial, to scan for kit types and arms."""

    responses: list[tuple[str, str]] = field(default_factory=list)

    def keep(self, what: str, response: Response) -> Response:
        self.responses.append((what, response.text))
        return response


def study_of(container: Container, slug: str) -> Study:
    with container.uow(TEST_ACTOR) as uow:
        stored = uow.studies.get(slug)
        assert stored is not None
    return stored.study


def secrets_of(study: Study) -> set[str]:
    return (
        {a.code for a in study.arms}
        | {a.label for a in study.arms}
        | {k.code for k in study.kit_types}
        | {k.description for k in study.kit_types}
    )


def shorten_some_expiry(container: Container, study: Study, expiry: date) -> None:
    """Give SHORT_DATED_PER_TYPE kits of each type bound for the first site an early expiry."""
    site = next(s.code for s in study.sites if s.active)
    with container.uow(TEST_ACTOR) as uow:
        (shipment,) = uow.supply.shipments(study.slug, site=site)
        kits = uow.supply.kits(study.slug, numbers=list(shipment.kit_numbers))
        types = uow.supply.types_of(study.slug, [k.id for k in kits])
    chosen: list[int] = []
    for kit_type in sorted(set(types.values())):
        chosen += sorted(i for i, t in types.items() if t == kit_type)[:SHORT_DATED_PER_TYPE]
    with container.session_factory() as session:
        session.execute(update(KitRow).where(KitRow.id.in_(chosen)).values(expiry_date=expiry))
        session.commit()


def make_subjects(study: Study) -> list[TrialSubject]:
    sites = [s.code for s in study.sites if s.active]
    subjects = []
    for i in range(SUBJECTS_PER_STUDY):
        strata = {
            f.code: f.levels[(i + n) % len(f.levels)].code for n, f in enumerate(study.factors)
        }
        subjects.append(
            TrialSubject(
                study=study.slug,
                subject_id=f"{study.slug.upper()}-{i + 1:04d}",
                site=sites[i % len(sites)],
                base_weight=Decimal(BASE_WEIGHTS[i]),
                arrival_day=ARRIVAL_DAYS[i],
                strata=strata,
            )
        )
    return subjects


def test_full_trial_of_both_studies(
    client: TestClient, loaded: Container, login: Login, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = SteppedClock(datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0))
    monkeypatch.setattr(loaded, "clock", clock)
    blinded = Blinded()

    studies = {slug: study_of(loaded, slug) for slug in STUDIES}
    subjects: list[TrialSubject] = []
    edc: dict[str, dict[str, str]] = {}
    pharmacists: dict[tuple[str, str], dict[str, str]] = {}
    supply_manager: dict[str, dict[str, str]] = {}
    for slug, study in studies.items():
        generate_list(loaded.uow(TEST_ACTOR), "test", slug)
        generate_kits(loaded.uow(TEST_ACTOR), slug)
        shorten_some_expiry(loaded, study, clock.today() + timedelta(days=33))
        edc[slug] = login("edc", studies=[slug])
        supply_manager[slug] = login("supply_manager", studies=[slug])
        for site in (s.code for s in study.sites if s.active):
            pharmacists[(slug, site)] = login("pharmacist", studies=[slug], sites=[site])
        subjects += make_subjects(study)

    # The study itself lists its arms, by contract (not scanned below).
    for slug, study in studies.items():
        read = client.get(f"/api/v1/studies/{slug}", headers=edc[slug])
        assert read.status_code == 200, read.text
        assert {a.code for a in study.arms} <= set(json.dumps(read.json()).split('"'))

    refusals: list[str] = []
    last_day = max(ARRIVAL_DAYS) + max(v.day for s in studies.values() for v in s.visits)
    for day in range(last_day + 1):
        clock.day = day
        for (slug, site), headers in pharmacists.items():
            api = f"/api/v1/studies/{slug}"
            listed = blinded.keep(
                "shipments",
                client.get(f"{api}/shipments", params={"site_id": site}, headers=headers),
            )
            assert listed.status_code == 200, listed.text
            for shipment in listed.json()["shipments"]:
                if shipment["status"] != "in_transit":
                    continue
                receipt = blinded.keep(
                    "receipt",
                    client.post(
                        f"{api}/shipments/{shipment['shipment_id']}/receipt", headers=headers
                    ),
                )
                assert receipt.status_code == 200, receipt.text
        # The night's housekeeping: the daily resupply review; what it ships arrives tomorrow.
        housekeeping(lambda: loaded.uow(TEST_ACTOR))

        for subject in subjects:
            if subject.arrival_day != day:
                continue
            api = f"/api/v1/studies/{subject.study}"
            registered = blinded.keep(
                "register",
                client.post(
                    f"{api}/subjects",
                    json={
                        "subject_id": subject.subject_id,
                        "site_id": subject.site,
                        "strata": subject.strata,
                    },
                    headers=edc[subject.study],
                ),
            )
            assert registered.status_code == 201, registered.text
            weight = subject.weight(0)
            randomized = blinded.keep(
                "randomize",
                client.post(
                    f"{api}/subjects/{subject.subject_id}/randomization",
                    json={"weight_kg": str(weight)},
                    headers=edc[subject.study],
                ),
            )
            if randomized.status_code != 201:
                refusals.append(f"day {day} {subject.subject_id} D1: {randomized.text}")
                continue
            subject.randomized_day = day
            dispensation = randomized.json()["dispensation"]
            first = studies[subject.study].visits[0].code
            assert dispensation["visit"] == first
            subject.given[first] = (
                weight,
                clock.today(),
                [k["kit_number"] for k in dispensation["kits"]],
            )

        for subject in subjects:
            if subject.randomized_day is None:
                continue
            study = studies[subject.study]
            for index, visit in enumerate(study.visits):
                if index == 0 or subject.randomized_day + visit.day != day:
                    continue
                api = f"/api/v1/studies/{subject.study}"
                weight = subject.weight(index)
                response = blinded.keep(
                    "dispense",
                    client.post(
                        f"{api}/subjects/{subject.subject_id}/dispensations",
                        json={"visit": visit.code, "weight_kg": str(weight)},
                        headers=pharmacists[(subject.study, subject.site)],
                    ),
                )
                if response.status_code != 201:
                    refusals.append(f"day {day} {subject.subject_id} {visit.code}: {response.text}")
                    continue
                subject.given[visit.code] = (
                    weight,
                    clock.today(),
                    [k["kit_number"] for k in response.json()["kits"]],
                )
                seen = blinded.keep(
                    "subject",
                    client.get(
                        f"{api}/subjects/{subject.subject_id}",
                        headers=pharmacists[(subject.study, subject.site)],
                    ),
                )
                assert seen.status_code == 200, seen.text

        for slug, study in studies.items():
            for site in (s.code for s in study.sites if s.active):
                inventory = blinded.keep(
                    "inventory",
                    client.get(
                        f"/api/v1/studies/{slug}/sites/{site}/inventory",
                        headers=supply_manager[slug],
                    ),
                )
                assert inventory.status_code == 200, inventory.text

    # Every site was resupplied in time: nothing was refused, every visit was served.
    assert refusals == []
    for subject in subjects:
        assert list(subject.given) == [v.code for v in studies[subject.study].visits]

    # The unblinded truth: type by arm x visit, quantity by weight band, in date, once.
    handed_out: dict[str, list[int]] = defaultdict(list)
    for subject in subjects:
        study = studies[subject.study]
        dnd = study.supply.do_not_dispense_days
        with loaded.uow(TEST_ACTOR) as uow:
            record = uow.subjects.get(subject.study, subject.subject_id)
            assert record is not None
            arm = uow.lists.arm_of(record)
            assert arm is not None
            dispensations = uow.supply.dispensations(record)
            types = uow.supply.types_of(
                subject.study, [k.id for d in dispensations for k in d.kits]
            )
        assert sorted(d.visit for d in dispensations) == sorted(subject.given)
        for d in dispensations:
            weight, on, numbers = subject.given[d.visit]
            where = f"{subject.subject_id} {d.visit}"
            quantity = quantity_for_weight(study.dispensing, weight)
            assert d.dispensed_at.date() == on, where
            assert d.quantity == quantity, where
            assert sorted(k.kit_number for k in d.kits) == sorted(numbers), where
            assert len(d.kits) == quantity, where
            want = study.dispensing.kit_type_by_arm_visit[(arm, d.visit)]
            assert [types[k.id] for k in d.kits] == [want] * quantity, where
            for kit in d.kits:
                assert kit.status is KitStatus.DISPENSED, where
                assert kit.visit == d.visit, where
                assert kit.expiry_date > on + timedelta(days=dnd), where
            handed_out[subject.study] += [k.id for k in d.kits]
    for slug, ids in handed_out.items():
        assert len(ids) == len(set(ids)), f"{slug}: a kit was handed out twice"

    # The short-dated kits were never handed out inside the window (checked above), and left
    # at the site or dispensed before it (the choice is random, not first-expiry-first-out).
    with loaded.uow(TEST_ACTOR) as uow:
        for slug in STUDIES:
            short = [
                k
                for k in uow.supply.kits(slug)
                if k.expiry_date == clock.start.date() + timedelta(days=33)
            ]
            assert len(short) == 2 * SHORT_DATED_PER_TYPE
            statuses = {k.status for k in short}
            assert statuses <= {KitStatus.AT_SITE, KitStatus.DISPENSED}, slug

    # No blinded response carried a kit type or an arm (code, label or description).
    secrets = set().union(*(secrets_of(s) for s in studies.values()))
    leaks = [
        f"{what}: {secret}"
        for what, text in blinded.responses
        for secret in secrets
        if secret in text or secret in json.dumps(_json(text), ensure_ascii=False)
    ]
    assert leaks == []
    assert len(blinded.responses) > 400  # ~520: lists, receipts, subjects, inventories


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text
