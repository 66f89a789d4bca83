"""A server worker killed with SIGKILL in the middle of load.

Client threads randomize (with the first visit's kits) over two uvicorn workers; one worker
is killed while requests are in flight. Afterwards: every subject is wholly randomized (slot,
kits, audit events) or not at all, the slots of each stratum are still a prefix of its list,
the audit chain verifies, uvicorn has replaced the dead worker, and the requests that never
got an answer succeed when retried with their Idempotency-Key.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from queue import Empty, Queue

import httpx
import pytest

from app.domain.roles import Role
from tests.reliability.checks import (
    assert_audit_verifies,
    slots_used,
    whole_or_nothing,
)
from tests.reliability.service import Service, study_document

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

STUDY = "iris-7a"
SITES = ("FR01", "FR02")
STRATA = [{"shock": "yes", "age": "lt65"}, {"shock": "no", "age": "ge65"}]
PER_STRATUM = 15
CLIENTS = 8


def test_a_worker_killed_mid_load_leaves_nothing_half_done(service: Service) -> None:
    service.load(study_document(STUDY, supply_level=60, cap=24, active_sites=list(SITES)))
    ids: list[str] = []
    for site in SITES:
        for s, strata in enumerate(STRATA):
            for i in range(PER_STRATUM):
                subject_id = f"{site}-{s}-{i:02d}"
                service.register(STUDY, subject_id, site, strata)
                ids.append(subject_id)
    edc = service.client(Role.EDC, [STUDY])
    service.start(workers=2)
    workers = service.wait_workers(2)
    token = service.token(edc)

    queue: Queue[str] = Queue()
    for subject_id in ids:
        queue.put(subject_id)
    answered: dict[str, int] = {}
    unanswered: list[str] = []
    done = 0
    lock = threading.Lock()

    def client() -> None:
        nonlocal done
        with httpx.Client(
            base_url=service.url, headers={"Authorization": f"Bearer {token}"}, timeout=60
        ) as http:
            while True:
                try:
                    subject_id = queue.get_nowait()
                except Empty:
                    return
                try:
                    response = http.post(
                        f"/api/v1/studies/{STUDY}/subjects/{subject_id}/randomization",
                        json={"weight_kg": 80},
                        headers={"Idempotency-Key": f"crash-{subject_id}"},
                    )
                    with lock:
                        answered[subject_id] = response.status_code
                        done += 1
                except httpx.TransportError:
                    with lock:
                        unanswered.append(subject_id)

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    while done < len(ids) // 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    with lock:
        at_kill = done
    os.kill(workers[0], signal.SIGKILL)
    for thread in threads:
        thread.join(timeout=180)
    assert not any(t.is_alive() for t in threads)
    assert at_kill < len(ids), "the load was over before the kill"

    # No answer but 201, or a 5xx from a request cut off by the crash.
    assert {s for s in answered.values() if s != 201 and s < 500} == set(), answered
    trial = whole_or_nothing(service.engine, STUDY)
    for site in SITES:
        for strata in STRATA:
            key = f"{site}|shock={strata['shock']}|age={strata['age']}"
            used, cursor = slots_used(service.engine, key)
            assert used == list(range(1, len(used) + 1)), f"{key}: {used}"
            assert cursor == len(used) + 1
    assert_audit_verifies(service)

    # The service goes on: uvicorn replaced the dead worker, and every request that got no
    # answer (or a 5xx) succeeds when retried with its key, exactly once.
    respawned = service.wait_workers(2)
    assert workers[0] not in respawned
    service.wait_ready()
    retry = sorted(set(unanswered) | {i for i, s in answered.items() if s != 201})
    with httpx.Client(
        base_url=service.url, headers={"Authorization": f"Bearer {token}"}, timeout=60
    ) as http:
        for subject_id in retry:
            response = http.post(
                f"/api/v1/studies/{STUDY}/subjects/{subject_id}/randomization",
                json={"weight_kg": 80},
                headers={"Idempotency-Key": f"crash-{subject_id}"},
            )
            if subject_id in trial.randomized:
                # Committed before the crash: the stored answer comes back.
                assert response.status_code == 201, response.text
                assert response.headers.get("Idempotent-Replayed") == "true"
            else:
                assert response.status_code == 201, response.text
    final = whole_or_nothing(service.engine, STUDY)
    assert final.randomized == set(ids)
    assert_audit_verifies(service)
    committed = [i for i in retry if i in trial.randomized]
    print(f"killed a worker after {at_kill} answers; retried {retry}; committed: {committed}")
