"""The blind-leak scan over a simulated trial on a real server.

`iwrs simulate`'s runner drives both example studies through the HTTP API of a server with
two workers (sites activate and receive shipments, subjects are randomized and dosed at every
visit, some miss a visit, fail screening, die or withdraw, one stratum a study is corrected,
a site a study closes to enrolment, an investigator breaks the code for one). Then every
arm code and label and every kit type code and description of both studies is searched for,
in any letter case, in:
- every response to a blinded role (everyone but the unblinded statistician, and but the
  one answer that tells the investigator the arm of the subject they unblinded);
- every line the server logged (its JSON logs on stdout and stderr, at INFO);
- a text dump of the whole database (pg_dump).
Zero hits anywhere.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from app.adapters.simulation import service as sim
from app.adapters.simulation.runner import Api, Results, Simulation
from app.domain.roles import Role
from tests.integration.test_blind_leaks import dump, leaked
from tests.reliability.service import Service, study_document
from tests.reliability.simsetup import simulation_setup

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

SUBJECTS_PER_STUDY = 6
ENROLLMENT_DAYS = 4

Seen = tuple[str, str, str, int, str]  # (role, method, path, status, body)


class RecordingApi(Api):
    """The simulation's HTTP client, keeping every answer with the role it was given to."""

    def __init__(self, base_url: str, results: Results, roles: dict[str, str]) -> None:
        super().__init__(base_url, results)
        self.roles = roles
        self.seen: list[Seen] = []

    def call(
        self,
        method: str,
        template: str,
        creds: sim.Credentials | None,
        fresh: bool = False,
        **kwargs: Any,
    ) -> httpx.Response:
        path = template.format(**kwargs.get("path", {}))
        response = super().call(method, template, creds, fresh, **kwargs)
        role = self.roles[creds.client_id] if creds else "anonymous"
        self.seen.append((role, method, path, response.status_code, response.text))
        return response


def _setup(service: Service) -> tuple[sim.Setup, dict[str, str]]:
    roles: dict[str, str] = {}
    docs = {slug: study_document(slug) for slug in ("iris-7a", "iris-7b")}
    return simulation_setup(service, docs, roles), roles


def _may_see_an_arm(role: str, method: str, path: str, status: int) -> bool:
    if role == Role.UNBLINDED_STATISTICIAN.value:
        return True
    # The investigator who breaks the code is told that one subject's arm, once.
    return role == "investigator" and method == "POST" and path.endswith("/unblinding")


def test_a_simulated_trial_leaks_no_arm_nor_kit_type(service: Service) -> None:
    setup, roles = _setup(service)
    service.start(workers=2)
    simulation = Simulation(setup, SUBJECTS_PER_STUDY, ENROLLMENT_DAYS, seed=11)
    simulation.api.http.close()
    api = RecordingApi(setup.url, simulation.results, roles)
    simulation.api = api
    try:
        results = simulation.run()
    finally:
        api.http.close()
    service.stop()  # every log line written

    # The trial happened: subjects dosed, one code broken, the allocations exported.
    assert dict(results.errors) == {}
    assert sum(results.visits_dispensed.values()) > 2 * SUBJECTS_PER_STUDY
    assert len(results.unblinded) == 1
    assert len(results.allocations) >= SUBJECTS_PER_STUDY
    # Every subject ended, as the API tells it: nobody is left on treatment or waiting.
    for slug, states in results.end_states.items():
        assert set(states) <= {"completed", "discontinued", "screen_failed"}, (slug, states)
        assert states["completed"] > 0, (slug, states)
        assert sum(states.values()) >= SUBJECTS_PER_STUDY
    assert sum(results.stratum_corrections.values()) == 2
    assert {s for sites in results.closed_sites.values() for s in sites} == {"FR03", "US02"}
    [unblinding] = [s for s in api.seen if s[1] == "POST" and s[2].endswith("/unblinding")]
    arm = json.loads(unblinding[4])["arm"]
    assert leaked(arm), "the scan would not see an arm"

    blinded = [s for s in api.seen if not _may_see_an_arm(*s[:4])]
    assert len(blinded) > 200
    assert {s[0] for s in blinded} >= {"edc", "pharmacist", "supply_manager", "admin"}
    assert [(s[:4], leaked(s[4])) for s in blinded if leaked(s[4])] == []

    lines = service.logs().splitlines()
    assert len(lines) > len(api.seen) // 2, "the server logged too little to be scanned"
    assert all(json.loads(line) for line in lines), "a log line that is not JSON"
    assert [line for line in lines if leaked(line)] == []

    text, _raw = dump(service.database_url)
    assert results.unblinded[0] in text, "the dump does not hold the trial"
    assert leaked(text) == []
