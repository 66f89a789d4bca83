"""The integration contract's core flow, as an EDC vendor codes it: through the Python client
that openapi-python-client generated from the served document, against the real server.

test_contract.py runs it with the tools' Python (the generated client needs httpx, attrs and
python-dateutil, which the project's venv does not hold) and the generated package on
PYTHONPATH:

    python flow.py CONFIG.json

CONFIG names the server, the study, the site and one client's credentials per role. The token
comes from httpx, as an OAuth 2 library would get it; every other call goes through the
generated functions, found by operation id, with the request bodies built from the generated
models. What the generated client cannot express is a finding: printed, exit status 1.
"""

from __future__ import annotations

import csv
import enum
import importlib
import io
import json
import pkgutil
import sys
import typing
import uuid
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx

PACKAGE = "iwrs_client"
WEIGHT_KG = 71.5  # the 60-90 kg band of the example studies: 2 kits a visit
DAYS_TO_D4 = 3  # iris-7a: D4 is day 3 (window -1/+1 day)
BLINDED_WORDS = ("arm", "kit_type", "treatment")


class Finding(Exception):
    """Something the generated client or the document does not let a vendor do."""


# --- the generated client, found by operation id ---------------------------------------------


def operation(operation_id: str) -> ModuleType:
    """The generated module of one operation, whatever tag it is filed under."""
    api = importlib.import_module(f"{PACKAGE}.api")
    names: list[str] = []
    for tag in pkgutil.iter_modules(api.__path__):
        package = importlib.import_module(f"{PACKAGE}.api.{tag.name}")
        for module in pkgutil.iter_modules(package.__path__):
            names.append(module.name)
            if module.name == operation_id:
                return importlib.import_module(f"{package.__name__}.{module.name}")
    raise Finding(
        f"the generated client has no operation {operation_id!r} (its operations: "
        f"{', '.join(sorted(names))})"
    )


def _argument_types(module: ModuleType, parameter: str) -> tuple[Any, ...]:
    hints = typing.get_type_hints(module.sync_detailed)
    if parameter not in hints:
        raise Finding(f"{module.__name__}: no parameter {parameter!r} in the generated function")
    return typing.get_args(hints[parameter]) or (hints[parameter],)


def body(module: ModuleType, **fields: Any) -> Any:
    """The operation's request body, as its generated model (from the JSON a vendor writes)."""
    for candidate in _argument_types(module, "body"):
        if isinstance(candidate, type) and hasattr(candidate, "from_dict"):
            return candidate.from_dict(fields)
    raise Finding(f"{module.__name__}: the request body has no generated model")


def choice(module: ModuleType, parameter: str, value: str) -> Any:
    """A parameter's value: the generated enum's member where it is an enum, else the text."""
    for candidate in _argument_types(module, parameter):
        if isinstance(candidate, type) and issubclass(candidate, enum.Enum):
            return candidate(value)
    return value


def call(operation_id: str, client: Any, expect: int, **arguments: Any) -> Any:
    """One call through the generated `sync_detailed`; its response when the status is `expect`."""
    module = operation(operation_id)
    try:
        response = module.sync_detailed(client=client, **arguments)
    except ValueError as exc:  # json.JSONDecodeError among them
        raise Finding(
            f"{operation_id}: the generated client read a {type(exc).__name__} from the answer "
            f"({exc}): it parses the answer as the document's first content type for that status"
        ) from exc
    except Exception as exc:
        raise Finding(
            f"{operation_id}: the generated client failed on the answer: {type(exc).__name__}: "
            f"{exc}"
        ) from exc
    if int(response.status_code) != expect:
        raise Finding(
            f"{operation_id}: answered {int(response.status_code)}, expected {expect}: "
            f"{response.content[:500]!r}"
        )
    return response


def parsed(operation_id: str, client: Any, expect: int, **arguments: Any) -> Any:
    """The generated model of a JSON answer (a finding when the client parsed nothing)."""
    response = call(operation_id, client, expect, **arguments)
    if response.parsed is None or type(response.parsed).__name__ == "Problem":
        raise Finding(
            f"{operation_id}: the generated client parsed no model from the {expect} answer "
            f"({type(response.parsed).__name__}): its schema is missing from the document"
        )
    return response.parsed


def problem_code(operation_id: str, client: Any, expect: int, **arguments: Any) -> str:
    """The machine `code` of a problem answer, read through the generated Problem model."""
    response = call(operation_id, client, expect, **arguments)
    code = getattr(response.parsed, "code", None)
    if not isinstance(code, str):
        raise Finding(
            f"{operation_id}: the {expect} answer was not parsed as a problem with a code "
            f"({type(response.parsed).__name__}): {response.content[:300]!r}"
        )
    return code


def csv_rows(operation_id: str, client: Any, **arguments: Any) -> list[dict[str, str]]:
    """The rows of a text/csv answer (200), read through the generated function."""
    response = call(operation_id, client, 200, **arguments)
    kind = response.headers.get("content-type", "")
    if not kind.startswith("text/csv"):
        raise Finding(f"{operation_id}: answered {kind!r}, not text/csv")
    text = response.parsed if isinstance(response.parsed, str) else response.content.decode()
    return list(csv.DictReader(io.StringIO(text)))


def blinded(what: str, record: Any) -> None:
    """No field of a blinded answer names an arm or a kit type."""

    def keys(value: Any) -> list[str]:
        if isinstance(value, dict):
            return [k for k, v in value.items() for k in (str(k), *keys(v))]
        if isinstance(value, list):
            return [k for item in value for k in keys(item)]
        return []

    data = record.to_dict() if hasattr(record, "to_dict") else record
    leaking = [k for k in keys(data) if k.lower().startswith(BLINDED_WORDS)]
    if leaking:
        raise Finding(f"{what}: a blinded answer has the fields {leaking}")


# --- the flow ---------------------------------------------------------------------------------


class Flow:
    def __init__(self, config: dict[str, Any]) -> None:
        client_module = importlib.import_module(PACKAGE)
        self.Client = client_module.Client
        self.AuthenticatedClient = client_module.AuthenticatedClient
        self.url: str = config["url"]
        self.study: str = config["study"]
        self.site: str = config["site"]
        self.people: dict[str, dict[str, str]] = config["people"]
        self.subject = f"{self.site}-C{uuid.uuid4().hex[:6].upper()}"
        self.kits: list[str] = []
        self.randomization_number: int | None = None

    def token(self, role: str) -> str:
        """A fresh access token by client credentials, as any OAuth 2 library gets it."""
        who = self.people[role]
        response = httpx.post(
            f"{self.url}/oauth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": who["client_id"],
                "client_secret": who["client_secret"],
            },
            timeout=30,
        )
        if response.status_code != 200:
            raise Finding(f"token for {role}: {response.status_code} {response.text[:300]}")
        return str(response.json()["access_token"])

    def as_(self, role: str) -> Any:
        """The generated AuthenticatedClient with a fresh token of `role`; an answer whose
        status the document does not declare raises."""
        return self.AuthenticatedClient(
            base_url=self.url, token=self.token(role), raise_on_unexpected_status=True
        )

    def anonymous(self) -> Any:
        return self.Client(base_url=self.url, raise_on_unexpected_status=True)

    # The steps, in the order an integration meets them.

    def service_answers(self) -> None:
        parsed("get_health", self.anonymous(), 200)
        parsed("get_readiness", self.anonymous(), 200)

    def token_through_the_generated_client(self) -> None:
        who = self.people["edc"]
        module = operation("issue_token")
        form = body(
            module,
            grant_type="client_credentials",
            client_id=who["client_id"],
            client_secret=who["client_secret"],
        )
        token = parsed("issue_token", self.anonymous(), 200, body=form)
        assert token.token_type.lower() == "bearer", token
        assert token.access_token, token
        wrong = body(module, grant_type="client_credentials", client_id=who["client_id"],
                     client_secret="not-the-secret")  # fmt: skip
        code = problem_code("issue_token", self.anonymous(), 401, body=wrong)
        assert code == "invalid_client", code

    def study_seen(self) -> None:
        edc = self.as_("edc")
        studies = parsed("list_studies", edc, 200)
        assert self.study in json.dumps(studies.to_dict()), studies
        study = parsed("get_study", edc, 200, study=self.study)
        assert self.site in json.dumps(study.to_dict()), study

    def shipment_received(self) -> None:
        pharmacist = self.as_("pharmacist")
        listed = parsed("list_shipments", pharmacist, 200, study=self.study, site_id=self.site)
        waiting = [s for s in listed.shipments if s.status != "received"]
        assert len(waiting) == 1, listed.to_dict()
        (shipment,) = waiting
        assert shipment.site_id == self.site, shipment
        assert shipment.kit_numbers, shipment
        module = operation("receive_shipment")
        received = parsed(
            "receive_shipment",
            pharmacist,
            200,
            study=self.study,
            shipment_id=shipment.shipment_id,
            body=body(module, damaged_kit_numbers=[]),
            idempotency_key=f"receipt-{shipment.shipment_id}",
        )
        assert received.status == "received", received
        inventory = parsed(
            "get_site_inventory", pharmacist, 200, study=self.study, site_id=self.site
        )
        blinded("inventory", inventory)

    def registered(self) -> None:
        module = operation("register_subject")
        subject = parsed(
            "register_subject",
            self.as_("edc"),
            201,
            study=self.study,
            body=body(
                module,
                subject_id=self.subject,
                site_id=self.site,
                strata={"shock": "yes", "age": "lt65"},
            ),
        )
        assert subject.subject_id == self.subject, subject
        assert subject.status == "registered", subject

    def randomized(self) -> None:
        edc = self.as_("edc")
        module = operation("randomize_subject")
        key = f"randomize-{self.subject}"
        request = body(module, weight_kg=WEIGHT_KG)
        first = parsed(
            "randomize_subject",
            edc,
            201,
            study=self.study,
            subject_id=self.subject,
            body=request,
            idempotency_key=key,
        )
        blinded("randomization", first)
        assert (first.subject_id, first.site_id) == (self.subject, self.site), first
        assert first.dispensation, first
        assert first.dispensation.kits, first
        self.randomization_number = first.randomization_number
        self.kits = [kit.kit_number for kit in first.dispensation.kits]
        again = parsed(  # a retry with the same key: the first answer again
            "randomize_subject",
            edc,
            201,
            study=self.study,
            subject_id=self.subject,
            body=request,
            idempotency_key=key,
        )
        assert again.to_dict() == first.to_dict(), (again, first)
        code = problem_code(
            "randomize_subject", edc, 409, study=self.study, subject_id=self.subject, body=request
        )
        assert code == "subject_already_randomized", code

    def kit_looked_up(self) -> None:
        for role in ("pharmacist", "investigator"):
            kit = parsed(
                "lookup_kit", self.as_(role), 200, study=self.study, kit_number=self.kits[0]
            )
            blinded("kit lookup", kit)
            assert kit.status == "dispensed", kit
            assert (kit.subject_id, kit.site_id) == (self.subject, self.site), kit

    def later_visit_dispensed(self) -> None:
        module = operation("dispense_visit")
        request = body(module, visit="D4", weight_kg=WEIGHT_KG)
        arguments = {"study": self.study, "subject_id": self.subject, "body": request}
        code = problem_code("dispense_visit", self.as_("edc"), 409, **arguments)
        assert code == "visit_not_allowed", code  # day 0: before D4's window
        # The service's clock moves on 3 days (the simulation clock: tests only).
        clock = operation("advance_simulation_clock")
        parsed(
            "advance_simulation_clock", self.as_("admin"), 200, body=body(clock, days=DAYS_TO_D4)
        )
        dispensed = parsed(
            "dispense_visit",
            self.as_("edc"),
            201,
            idempotency_key=f"dispense-{self.subject}-D4",
            **arguments,
        )
        blinded("dispensation", dispensed)
        assert dispensed.visit == "D4", dispensed
        assert dispensed.kits, dispensed
        self.kits += [kit.kit_number for kit in dispensed.kits]
        again = problem_code("dispense_visit", self.as_("edc"), 409, **arguments)
        assert again == "visit_already_dispensed", again

    def unblinded(self) -> None:
        module = operation("unblind_subject")
        reason = "anaphylactic reaction: the treating physician needs the arm"
        investigator = self.as_("investigator")  # a fresh token: unblinding demands one
        done = parsed(
            "unblind_subject",
            investigator,
            200,
            study=self.study,
            subject_id=self.subject,
            body=body(module, reason=reason),
        )
        assert done.subject_id == self.subject, done
        assert done.arm, done
        assert done.unblinded_by, done

    def status_read(self) -> None:
        subject = parsed(
            "get_subject", self.as_("edc"), 200, study=self.study, subject_id=self.subject
        )
        blinded("subject status", subject)
        assert subject.status == "randomized", subject
        assert subject.randomization_number == self.randomization_number, subject
        assert subject.unblinded is True, subject
        visits = [d.visit for d in subject.dispensations]
        assert visits[:2] == ["D1", "D4"], visits

    def list_exported(self) -> None:
        module = operation("get_randomization_list")
        listed = parsed(
            "get_randomization_list",
            self.as_("statistician"),
            200,
            study=self.study,
            format_=choice(module, "format_", "json"),
        )
        taken = [slot for slot in listed.slots if slot.subject_id == self.subject]
        assert len(taken) == 1, listed.to_dict()
        assert taken[0].arm, taken

    def list_exported_as_csv(self) -> None:
        rows = csv_rows("export_randomization_list_csv", self.as_("statistician"), study=self.study)
        mine = [r for r in rows if r.get("subject_id") == self.subject]
        assert len(mine) == 1, rows[:3]
        assert mine[0].get("arm"), mine

    def pooled_exported(self) -> None:
        rows = csv_rows(
            "export_pooled_allocations", self.as_("statistician"), studies="iris-7a,iris-7b"
        )
        mine = [r for r in rows if r.get("subject") == self.subject]  # its column: subject
        assert len(mine) == 1, rows[:3]
        assert mine[0].get("arm"), mine


STEPS: list[tuple[str, Callable[[Flow], None], bool]] = [
    # (what, step, whether the steps after it need it)
    ("the service answers (health, ready)", Flow.service_answers, False),
    ("a token through the generated operation", Flow.token_through_the_generated_client, False),
    ("the study is seen", Flow.study_seen, False),
    ("the pharmacist receives the initial shipment", Flow.shipment_received, True),
    ("a subject is registered", Flow.registered, True),
    ("randomized with a weight (first visit's kits; a retry; a second try)", Flow.randomized, True),
    ("a dispensed kit is looked up", Flow.kit_looked_up, False),
    ("D4 is dispensed three days later", Flow.later_visit_dispensed, False),
    ("the investigator unblinds the subject", Flow.unblinded, False),
    ("the subject's status", Flow.status_read, False),
    ("the statistician exports the list (JSON)", Flow.list_exported, False),
    ("the statistician exports the list (CSV)", Flow.list_exported_as_csv, False),
    ("the statistician exports the pooled allocations (CSV)", Flow.pooled_exported, False),
]  # fmt: skip


def main() -> int:
    config = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
    flow = Flow(config)
    findings: list[str] = []
    for what, step, needed in STEPS:
        try:
            step(flow)
        except (Finding, AssertionError) as exc:
            kind = "FINDING" if isinstance(exc, Finding) else "WRONG ANSWER"
            findings.append(f"{what}: {kind}: {exc}")
            print(f"FAIL  {what}\n      {kind}: {exc}", flush=True)
            if needed:
                print("      (the steps after it need it: stopped)", flush=True)
                break
        else:
            print(f"ok    {what}", flush=True)
    if findings:
        print(f"\n{len(findings)} step(s) failed through the generated client", flush=True)
        return 1
    print("\nthe contract's core flow passed through the generated client", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
