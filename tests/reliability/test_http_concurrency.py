"""Many clients against a real server with two uvicorn workers on one PostgreSQL database.

- Client processes randomize into one stratum, then dispense the next visit at the same
  site: no slot used twice, none skipped (the slots used are the list's first N), no kit
  handed out twice, and every subject wholly randomized.
- Threads fire the same Idempotency-Key at one randomization at once: one effect (one
  allocation, one audit event, one dispensation) and the same answer for every one.
"""

from __future__ import annotations

import json
import threading

import httpx
import pytest

from app.domain.roles import Role
from tests.reliability.checks import (
    assert_audit_verifies,
    assert_slots_are_a_prefix,
    whole_or_nothing,
)
from tests.reliability.load import post_from_processes
from tests.reliability.service import Service, study_document

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

STUDY, SITE = "iris-7a", "FR01"
STRATA = {"shock": "no", "age": "ge65"}
STRATUM = f"{SITE}|shock=no|age=ge65"
SUBJECTS = 30  # of a list of 36 slots: the used ones must be exactly its first 30
PROCESSES = 4


def test_processes_and_workers_racing_into_one_stratum_and_one_site(service: Service) -> None:
    service.load(study_document(STUDY, supply_level=80, cap=36, active_sites=[SITE]))
    ids = [f"RACE-{i:03d}" for i in range(SUBJECTS)]
    for subject_id in ids:
        service.register(STUDY, subject_id, SITE, STRATA)
    edc = service.client(Role.EDC, [STUDY])
    pharmacist = service.client(Role.PHARMACIST, [STUDY], [SITE])
    service.start(workers=2)

    randomized = post_from_processes(
        service.url,
        service.token(edc),
        f"/api/v1/studies/{STUDY}/subjects/{{item}}/randomization",
        {"weight_kg": 40},  # one kit each
        ids,
        PROCESSES,
    )
    assert [(i, s) for i, s, _ in randomized if s != 201] == []
    numbers = [json.loads(body)["randomization_number"] for _, _, body in randomized]
    assert len(set(numbers)) == SUBJECTS
    kits = [
        k["kit_number"]
        for _, _, body in randomized
        for k in json.loads(body)["dispensation"]["kits"]
    ]
    assert len(kits) == len(set(kits)) == SUBJECTS

    service.advance_clock(3)  # D4 is due on day 3
    dispensed = post_from_processes(
        service.url,
        service.token(pharmacist),
        f"/api/v1/studies/{STUDY}/subjects/{{item}}/dispensations",
        {"visit": "D4", "weight_kg": 70},  # two kits each
        ids,
        PROCESSES,
    )
    assert [(i, s, b) for i, s, b in dispensed if s != 201] == []
    kits += [k["kit_number"] for _, _, body in dispensed for k in json.loads(body)["kits"]]
    assert len(kits) == len(set(kits)) == 3 * SUBJECTS, "a kit was handed out twice"

    assert_slots_are_a_prefix(service.engine, STRATUM, SUBJECTS)
    trial = whole_or_nothing(service.engine, STUDY)
    assert trial.randomized == set(ids)
    assert trial.kits_dispensed == 3 * SUBJECTS
    assert_audit_verifies(service)


THREADS = 8


def test_one_idempotency_key_fired_at_once(service: Service) -> None:
    service.load(study_document(STUDY, active_sites=[SITE]))
    service.register(STUDY, "IDEM-1", SITE, STRATA)
    service.register(STUDY, "IDEM-2", SITE, STRATA)
    edc = service.client(Role.EDC, [STUDY])
    service.start(workers=2)
    token = service.token(edc)
    path = f"/api/v1/studies/{STUDY}/subjects/IDEM-1/randomization"
    barrier = threading.Barrier(THREADS)
    answers: list[tuple[int, str, bool]] = []
    lock = threading.Lock()

    def fire() -> None:
        # A connection of its own per thread, so the requests spread over both workers.
        with httpx.Client(base_url=service.url, timeout=60) as http:
            headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": "same-key-1"}
            barrier.wait(timeout=30)
            response = http.post(path, json={"weight_kg": 71.5}, headers=headers)
        with lock:
            answers.append(
                (
                    response.status_code,
                    response.text,
                    response.headers.get("Idempotent-Replayed") == "true",
                )
            )

    threads = [threading.Thread(target=fire) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(answers) == THREADS
    assert {status for status, _, _ in answers} == {201}, answers
    assert {json.loads(body)["randomization_number"] for _, body, _ in answers} != set()
    bodies = {json.dumps(json.loads(body), sort_keys=True) for _, body, _ in answers}
    assert len(bodies) == 1, f"different answers to one key: {bodies}"
    assert len({body for _, body, _ in answers}) == 1, "the replayed bytes differ"
    assert sum(not replayed for _, _, replayed in answers) == 1, "not exactly one first answer"

    # The same key with another body is refused, and changes nothing.
    other = httpx.post(
        service.url + f"/api/v1/studies/{STUDY}/subjects/IDEM-2/randomization",
        json={"weight_kg": 71.5},
        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": "same-key-1"},
        timeout=60,
    )
    assert other.status_code == 422
    assert other.json()["code"] == "idempotency_key_reused"

    trial = whole_or_nothing(service.engine, STUDY)
    assert trial.randomized == {"IDEM-1"}
    assert trial.registered == {"IDEM-2"}
    assert_slots_are_a_prefix(service.engine, STRATUM, 1)
    assert_audit_verifies(service)
