"""Schemathesis against the service's own OpenAPI document, over HTTP, with a valid token
of every role (and none): no 5xx, and no response that breaks what the document says (its
status code, its content type, its body's schema).

Each operation gets a bounded number of generated requests, valid and invalid ones, each sent
as one role (mostly one the operation allows), half of the time with its path pointing at
real records (a loaded study, a registered subject, an active site) to get past "not found".
Then a few hand-picked values that pass the request models but not PostgreSQL (a NUL
character, an integer past 32 bits) must get a 4xx problem, not a 500.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx
import pytest
import schemathesis
import schemathesis.core.failures
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app.domain.roles import Role
from tests.reliability.service import Service, study_document

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

EXAMPLES_PER_OPERATION = 15  # x 27 operations: bounded, 15-40 s on 2 shared cores
A, B = "iris-7a", "iris-7b"
REAL = {
    "study": [A, B],
    "subject_id": ["FR01-001", "FR02-002", "US01-001"],
    "site_id": ["FR01", "US01"],
    "visit": ["D1", "D4"],
}


def test_the_api_keeps_its_own_schema_for_every_role(service: Service) -> None:
    for slug in (A, B):
        service.load(study_document(slug))
    service.register(A, "FR01-001", "FR01", {"shock": "yes", "age": "lt65"})
    service.register(A, "FR02-002", "FR02", {"shock": "no", "age": "ge65"})
    service.register(B, "US01-001", "US01", {"shock": "yes", "age": "lt65"})
    creds = {
        role: service.client(
            role,
            [A, B],
            ["FR01", "US01"] if role.site_scoped else None,
            name=f"st-{role.value}",
        )
        for role in Role
    }
    service.start(workers=2, IWRS_SIMULATION_CLOCK_FILE=None)
    headers: dict[str, dict[str, str]] = {role.value: service.headers(creds[role]) for role in Role}
    headers["anonymous"] = {}
    document = httpx.get(f"{service.url}/openapi.json", timeout=30).json()
    schema = schemathesis.openapi.from_dict(document)
    failures: list[str] = []
    seen: Counter[tuple[str, str, int]] = Counter()

    # Locking a study, deactivating a site or closing its enrolment refuses later writes:
    # those last, so the other writes get tested too.
    results = list(schema.get_all_operations())
    assert all(isinstance(r, Ok) for r in results), "the service's own document is invalid"
    closing = ("/deactivation", "/enrolment-closure", "/lock")
    operations = sorted(
        (r.ok() for r in results if isinstance(r, Ok)),
        key=lambda op: next((i + 1 for i, end in enumerate(closing) if op.path.endswith(end)), 0),
    )
    # Known-good requests through the same checks, first (the fuzzing may lock the study or
    # deactivate its sites), so that every run validates a creating answer too, whatever
    # the fuzzer happens to reach: a registration (201) and its read.
    by_key = {(op.method.upper(), op.path): op for op in operations}
    known: list[tuple[str, str, dict[str, Any], Any, str]] = [
        (
            "POST",
            "/api/v1/studies/{study}/subjects",
            {"study": A},
            {
                "subject_id": "ST-KNOWN-1",
                "site_id": "FR01",
                "strata": {"shock": "no", "age": "lt65"},
            },
            "edc",
        ),
        (
            "GET",
            "/api/v1/studies/{study}/subjects/{subject_id}",
            {"study": A, "subject_id": "ST-KNOWN-1"},
            None,
            "edc",
        ),
    ]
    for method, path, params, body, who in known:
        case = by_key[(method, path)].Case(
            path_parameters=params, **({} if body is None else {"body": body})
        )
        response = case.call(base_url=service.url, headers=headers[who], timeout=60)
        seen[(method, path, response.status_code)] += 1
        assert response.status_code < 300, (method, path, response.text)
        case.validate_response(
            response,
            checks=[
                not_a_server_error,
                response_schema_conformance,
                content_type_conformance,
                status_code_conformance,
            ],
        )
    for operation in operations:
        allowed = document["paths"][operation.path][operation.method.lower()].get(
            "x-iwrs-roles", []
        )
        # Mostly a role the operation allows (to get past 403), sometimes any other.
        roles = st.one_of(
            st.sampled_from(allowed or sorted(headers)),
            st.sampled_from(allowed or sorted(headers)),
            st.sampled_from(sorted(headers)),
        )

        @given(
            case=st.one_of(
                operation.as_strategy(),
                operation.as_strategy(generation_mode=GenerationMode.NEGATIVE),
            ),
            who=roles,
            real=st.booleans(),
            pick=st.integers(min_value=0, max_value=99),
        )
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Any, who: str, real: bool, pick: int) -> None:
            if real:
                for name, values in REAL.items():
                    if name in (case.path_parameters or {}):
                        case.path_parameters[name] = values[pick % len(values)]
            response = case.call(base_url=service.url, headers=headers[who], timeout=60)
            seen[(case.method, case.path, response.status_code)] += 1
            try:
                case.validate_response(
                    response,
                    checks=[
                        not_a_server_error,
                        response_schema_conformance,
                        content_type_conformance,
                        status_code_conformance,
                    ],
                )
            except (AssertionError, schemathesis.core.failures.FailureGroup) as exc:
                failures.append(f"{who} {case.method} {case.formatted_path}: {exc}")

        run()

    assert failures == [], "\n\n".join(failures[:10])
    assert sum(seen.values()) >= len(operations) * EXAMPLES_PER_OPERATION // 2
    statuses = {status for (_m, _p, status) in seen}
    assert statuses >= {200, 201, 401, 403, 404, 422}, sorted(seen.items())

    # Hand-picked values that pass the request models but not the database: a NUL character
    # (PostgreSQL text cannot hold one) and an integer past 32 bits.
    hostile: list[tuple[str, str, dict[str, Any], str]] = [
        ("GET", f"/api/v1/studies/{A}/audit", {"params": {"subject_id": "a\x00b"}}, "auditor"),
        ("GET", f"/api/v1/studies/{A}/audit", {"params": {"action": "\x00"}}, "admin"),
        ("GET", f"/api/v1/studies/{A}/audit", {"params": {"after_seq": 2**40}}, "auditor"),
        ("GET", "/api/v1/studies/%00", {}, "edc"),
        ("GET", f"/api/v1/studies/{A}/kits/%00", {}, "pharmacist"),
        ("GET", f"/api/v1/studies/{A}/shipments/%00", {}, "supply_manager"),
        (
            "POST",
            "/oauth/token",
            {
                "data": {
                    "grant_type": "client_credentials",
                    "client_id": "\x00",
                    "client_secret": "x",
                }
            },
            "anonymous",
        ),
        (
            "POST",
            f"/api/v1/studies/{A}/subjects",
            {"json": {"subject_id": "N1", "site_id": "FR01", "strata": {"shock\x00": "yes"}}},
            "edc",
        ),
        (
            "POST",
            f"/api/v1/studies/{A}/subjects/FR01-001/unblinding",
            {"json": {"reason": "emergency \x00 reason"}},
            "investigator",
        ),
    ]
    for method, path, kwargs, who in hostile:
        response = httpx.request(
            method, service.url + path, headers=headers[who], timeout=60, **kwargs
        )
        assert 400 <= response.status_code < 500, (method, path, response.text)
        assert response.headers["content-type"] == "application/problem+json", path
