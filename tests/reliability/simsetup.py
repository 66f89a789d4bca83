"""The simulation's setup on a reliability-suite service: studies loaded, one client a role."""

from __future__ import annotations

from typing import Any

from app.adapters.simulation import service as sim
from app.domain.roles import Role
from tests.reliability.service import Credentials, Service


def simulation_setup(
    service: Service, docs: dict[str, dict[str, Any]], roles: dict[str, str] | None = None
) -> sim.Setup:
    """Load each study document (its initial shipments left in transit: the simulated
    pharmacists receive them), make a client for every role the runner plays, and return
    the runner's setup; `roles`, when given, collects each client's role by client id."""

    def made(creds: Credentials) -> sim.Credentials:
        if roles is not None:
            roles[creds.client_id] = creds.role.value
        return sim.Credentials(creds.client_id, creds.client_secret)

    studies = {}
    for slug, doc in docs.items():
        sites = service.load(doc, receive=False)
        studies[slug] = sim.StudySetup(
            slug=slug,
            sites=sites,
            visits=[(v["code"], int(v["day"])) for v in doc["visits"]],
            factors={
                f["code"]: [lv["code"] for lv in f["levels"]] for f in doc["stratification_factors"]
            },
            edc=made(service.client(Role.EDC, [slug])),
            pharmacists={
                site: made(service.client(Role.PHARMACIST, [slug], [site])) for site in sites
            },
            investigators={
                site: made(service.client(Role.INVESTIGATOR, [slug], [site])) for site in sites
            },
        )
    both = list(studies)
    return sim.Setup(
        url=service.url,
        admin=made(service.client(Role.ADMIN, [])),
        statistician=made(service.client(Role.UNBLINDED_STATISTICIAN, both)),
        supply_manager=made(service.client(Role.SUPPLY_MANAGER, both)),
        studies=studies,
    )
