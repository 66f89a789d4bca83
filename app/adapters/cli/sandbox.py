"""`iwrs quickstart --sandbox`: a UAT sandbox an EDC developer can randomize in at once.

On top of quickstart (keys, database, example studies, lists, kits) the sandbox puts every
study in `uat` mode before its list is made (so its lists and subjects are test ones, kept
apart from live ones), creates one API client per role granted every study, has the
pharmacist receive the initial shipments of the active sites, and prints the credentials
with a first curl session. A database whose studies are live and have subjects is refused:
a sandbox is never made out of a live trial.

Secrets are printed once, to the terminal, and never logged; a client that exists already
(the command run again) gets a new secret, and its old one stops working.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING

from app.adapters.cli.common import fail, operator
from app.domain.roles import Role

if TYPE_CHECKING:
    from rich.console import Console

    from app.bootstrap import Container
    from app.domain.study import Study

MODE = "uat"
NAME_PREFIX = "sandbox-"
# Every role of the contract; site roles get sites (see `_sites_for`).
ROLES: tuple[Role, ...] = (
    Role.EDC,
    Role.INVESTIGATOR,
    Role.PHARMACIST,
    Role.SUPPLY_MANAGER,
    Role.UNBLINDED_STATISTICIAN,
    Role.SAFETY_OFFICER,
    Role.AUDITOR,
    Role.ADMIN,
)
BANNER = "UAT SANDBOX: test lists and test subjects only, never a live trial"


@dataclass(frozen=True, slots=True)
class SandboxClient:
    role: str
    name: str
    client_id: str
    client_secret: str = field(repr=False)
    studies: tuple[str, ...]
    sites: dict[str, list[str]]


@dataclass(frozen=True, slots=True)
class Sandbox:
    base_url: str
    studies: tuple[str, ...]
    clients: dict[str, SandboxClient]  # by role
    received: tuple[str, ...]  # shipments received now, "study/code"
    example: dict[str, object]  # the curl session's study, site, strata, weight, visit

    def as_json(self) -> str:
        return json.dumps(
            {
                "mode": MODE,
                "base_url": self.base_url,
                "studies": list(self.studies),
                "clients": {
                    role: {
                        "name": c.name,
                        "client_id": c.client_id,
                        "client_secret": c.client_secret,
                        "studies": list(c.studies),
                        "sites": c.sites,
                    }
                    for role, c in self.clients.items()
                },
                "example": self.example,
            }
        )


def prepare_modes(c: Container, slugs: list[str]) -> None:
    """Put each study in `uat` mode, refusing a study live with subjects."""
    from app.services.studies import set_mode

    for slug in slugs:
        uow = c.uow(operator())
        with uow:
            mode = uow.studies.mode(slug)
            has_subjects = bool(uow.studies.sites_with_subjects(slug))
        if mode != MODE and has_subjects:
            fail(
                f"study {slug} is {mode} and has subjects: a sandbox is never made in a live "
                "database",
                "use a database of its own, e.g. IWRS_DATABASE_URL=sqlite:///iwrs-sandbox.db",
            )
        set_mode(c.uow(operator()), slug, MODE)


def _active_sites(study: Study) -> list[str]:
    return [s.code for s in study.sites if s.active]


def _sites_for(role: Role, studies: dict[str, Study]) -> list[str]:
    """The investigator gets each study's first active site (where the curl session
    registers); the pharmacist every active site, whose shipments it receives."""
    if role is Role.INVESTIGATOR:
        return [sites[0] for s in studies.values() if (sites := _active_sites(s))]
    if role is Role.PHARMACIST:
        return [code for s in studies.values() for code in _active_sites(s)]
    return []


def _client(c: Container, role: Role, studies: dict[str, Study]) -> SandboxClient:
    """Create the role's sandbox client, or give the existing one a new secret."""
    from app.services.clients import create_client, rotate_secret

    name = NAME_PREFIX + role.value.replace("_", "-")
    uow = c.uow(operator())
    with uow:
        existing = uow.clients.get_by_name(name)
    if existing is not None and not existing.disabled:
        issued = rotate_secret(c.uow(operator()), c.hasher, existing.client_id)
    else:
        if existing is not None:
            fail(f"client {name} is disabled; the sandbox will not re-enable it")
        issued = create_client(
            c.uow(operator()),
            c.hasher,
            name=name,
            role=role,
            studies=list(studies),
            sites=_sites_for(role, studies),
        )
    client = issued.client
    return SandboxClient(
        role=role.value,
        name=client.name,
        client_id=client.client_id,
        client_secret=issued.secret,
        studies=tuple(sorted(client.studies)) if client.studies is not None else ("*",),
        sites={slug: sorted(codes) for slug, codes in sorted(client.sites.items())},
    )


def _receive_initial_shipments(c: Container, pharmacist_id: str) -> list[str]:
    """The pharmacist confirms the arrival of every shipment still in transit to its sites,
    through the use case its API call runs (audited as that pharmacist)."""
    from app.services.clients import principal_for
    from app.services.supply import list_shipments, receive_shipment

    uow = c.uow(operator())
    with uow:
        client = uow.clients.get(pharmacist_id)
    assert client is not None
    principal = principal_for(client, None)
    received: list[str] = []
    for slug in sorted(client.sites):
        for shipment in list_shipments(c.uow(principal.actor), principal, slug):
            if shipment.status == "in_transit":
                receive_shipment(c.uow(principal.actor), principal, slug, shipment.code)
                received.append(f"{slug}/{shipment.code}")
    return received


def _example(study: Study, site: str) -> dict[str, object]:
    bands = sorted(study.dispensing.weight_bands, key=lambda b: b.min_kg)
    weight = Decimal("71.5")
    if not any(b.contains(weight) for b in bands):
        weight = bands[0].min_kg
    later = study.visits[1].code if len(study.visits) > 1 else study.visits[0].code
    return {
        "study": study.slug,
        "site_id": site,
        "subject_id": "SBX-" + secrets.token_hex(3).upper(),
        "strata": {f.code: f.levels[0].code for f in study.factors},
        "weight_kg": float(weight),
        "eligibility": {q.code: True for q in study.eligibility} or None,
        "later_visit": later,
        "later_visit_day": study.visits[1].day if len(study.visits) > 1 else 0,
    }


def setup(c: Container, slugs: list[str]) -> Sandbox:
    """Clients for every role, the initial shipments received; `slugs` are in uat mode
    with their lists and kits already (see `prepare_modes`)."""
    studies: dict[str, Study] = {}
    for slug in sorted(slugs):
        uow = c.uow(operator())
        with uow:
            stored = uow.studies.get(slug)
        assert stored is not None
        studies[slug] = stored.study
    clients = {role.value: _client(c, role, studies) for role in ROLES}
    received = _receive_initial_shipments(c, clients[Role.PHARMACIST.value].client_id)
    investigator_sites = clients[Role.INVESTIGATOR.value].sites
    # The EDC's first study with an active site: the one the curl session uses.
    slug = next(s for s in studies if investigator_sites.get(s))
    example = _example(studies[slug], investigator_sites[slug][0])
    base = f"http://{c.settings.host}:{c.settings.port}"
    return Sandbox(base, tuple(studies), clients, tuple(received), example)


def curl_session(box: Sandbox) -> str:
    """A first session as an EDC: token, register, randomize with weight, a later visit,
    the subject's blinded view."""
    edc = box.clients[Role.EDC.value]
    ex = box.example
    study, subject = ex["study"], ex["subject_id"]
    register = {"subject_id": subject, "site_id": ex["site_id"], "strata": ex["strata"]}
    randomize: dict[str, object] = {"weight_kg": ex["weight_kg"]}
    if ex["eligibility"]:
        randomize["eligibility"] = ex["eligibility"]
    dispense = {"visit": ex["later_visit"], "weight_kg": ex["weight_kg"]}
    subject_url = f"$IWRS/api/v1/studies/{study}/subjects/{subject}"
    post = 'curl -s -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json"'
    return "\n".join(
        [
            f"export IWRS={box.base_url}",
            f"export CLIENT_ID={edc.client_id} CLIENT_SECRET={edc.client_secret}",
            'TOKEN=$(curl -s -u "$CLIENT_ID:$CLIENT_SECRET" -d grant_type=client_credentials '
            '$IWRS/oauth/token | python3 -c "import json,sys; '
            "print(json.load(sys.stdin)['access_token'])\")",
            f'curl -s -H "Authorization: Bearer $TOKEN" $IWRS/api/v1/studies/{study}',
            f'{post} -H "Idempotency-Key: {subject}-register" '
            f"-d '{json.dumps(register)}' $IWRS/api/v1/studies/{study}/subjects",
            f'{post} -H "Idempotency-Key: {subject}-randomize" '
            f"-d '{json.dumps(randomize)}' {subject_url}/randomization",
            f"# day {ex['later_visit_day']} after randomization, in the visit's window "
            "(site-local dates); earlier, 409 visit_not_allowed:",
            f'{post} -H "Idempotency-Key: {subject}-{ex["later_visit"]}" '
            f"-d '{json.dumps(dispense)}' {subject_url}/dispensations",
            f'curl -s -H "Authorization: Bearer $TOKEN" {subject_url}',
        ]
    )


def print_text(box: Sandbox, out: Console) -> None:
    """The banner, every client's credentials (shown this once) and the curl session."""
    rule = "=" * len(BANNER)
    out.print(rule, highlight=False, markup=False)
    out.print(BANNER, style="bold yellow", highlight=False, markup=False)
    out.print(rule, highlight=False, markup=False)
    out.print(
        f"studies in {MODE} mode: {', '.join(box.studies)}; "
        f"initial shipments received by the pharmacist: {len(box.received)}",
        highlight=False,
    )
    out.print("API clients (secrets shown once, stored only as hashes; keep them now):")
    for role, client in box.clients.items():
        sites = "; ".join(f"{s}: {','.join(codes)}" for s, codes in client.sites.items())
        out.print(
            f"  {role:<23} {client.client_id}  {client.client_secret}"
            + (f"  sites {sites}" if sites else ""),
            highlight=False,
            markup=False,
        )
    out.print("a first session as the EDC (docs/integration.md says what comes next):")
    out.print(curl_session(box), highlight=False, markup=False)
