"""The public OpenAPI document: names, operation ids, tags, types, examples and problems, as a
client generator and an integrator read them."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import jsonschema_rs
import pytest
from fastapi.testclient import TestClient

from app import __version__
from app.adapters.api.app import create_app
from app.adapters.api.openapi import (
    CONTRACT_VERSION,
    OTHER_PROBLEMS,
    TAGS,
    problem_doc,
    schema_routes,
)
from app.adapters.api.problems import STATUS_BY_ERROR
from app.bootstrap import Container
from app.domain.errors import DomainError
from app.services.randomization import generate_list
from tests.api.conftest import Login
from tests.api.test_supply import dispense_url, generate, randomized, receive
from tests.conftest import TEST_ACTOR

SNAKE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")
SCHEMA_NAME = re.compile(r"^[A-Z][A-Za-z0-9]*$")
METHODS = {"get", "post", "put", "patch", "delete"}
# What the example studies name and no blinded document may: arm codes and labels, kit types.
BLINDED_WORDS = ("PLACEBO", "CYT107", "KT_IL7", "KT_PBO", "KT_")
# Operations whose answers carry an arm, to the one caller entitled to it.
UNBLINDED = {
    "unblind_subject",
    "get_subject_arm",
    "get_randomization_list",
    "export_randomization_list_csv",
    "get_randomization_list_qc",
    "export_pooled_allocations",
    "upload_randomization_list",
}


@pytest.fixture
def spec(client: TestClient) -> dict[str, Any]:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    return response.json()  # type: ignore[no-any-return]


def operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].removeprefix("#/components/schemas/")
        schema = spec["components"]["schemas"][name]
    return schema


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def validate(spec: dict[str, Any], schema: dict[str, Any], example: Any) -> list[str]:
    """The example's errors against the schema (OAS 3.1: JSON Schema 2020-12)."""
    root = {**schema, "components": spec["components"]}
    return [e.message for e in jsonschema_rs.Draft202012Validator(root).iter_errors(example)]


class TestNames:
    def test_schema_names_are_chosen_not_derived(self, spec: dict[str, Any]) -> None:
        names = set(spec["components"]["schemas"])
        assert all(SCHEMA_NAME.match(n) for n in names), sorted(
            n for n in names if not SCHEMA_NAME.match(n)
        )
        assert not names & {"HTTPValidationError", "ValidationError"}
        assert {"Problem", "DispensationRead", "KitRead", "SubjectDispensationRead"} <= names

    def test_every_reference_resolves(self, spec: dict[str, Any]) -> None:
        names = set(spec["components"]["schemas"])
        for ref in refs(spec):
            assert ref.removeprefix("#/components/schemas/") in names, ref

    def test_no_component_is_unused(self, spec: dict[str, Any]) -> None:
        used = {r.removeprefix("#/components/schemas/") for r in refs(spec)}
        assert set(spec["components"]["schemas"]) <= used


class TestOperationIds:
    def test_every_route_sets_its_id(self, loaded: Container) -> None:
        routes = list(schema_routes(create_app(loaded)))
        assert len(routes) > 40
        assert [(m, p) for p, m, r in routes if not r.operation_id] == []

    def test_ids_are_unique_short_snake_case(self, spec: dict[str, Any]) -> None:
        ids = [op["operationId"] for _p, _m, op in operations(spec)]
        assert len(ids) == len(set(ids))
        for op_id in ids:
            assert SNAKE.match(op_id), op_id
            assert "api_v1" not in op_id, op_id
            assert len(op_id) <= 40, op_id

    def test_the_contract_operations_keep_their_ids(self, spec: dict[str, Any]) -> None:
        ids = {(m.upper(), p): op["operationId"] for p, m, op in operations(spec)}
        v1 = "/api/v1/studies/{study}"
        assert {
            ("POST", "/oauth/token"): "issue_token",
            ("GET", "/api/v1/studies"): "list_studies",
            ("GET", v1): "get_study",
            ("POST", f"{v1}/subjects"): "register_subject",
            ("POST", f"{v1}/subjects/{{subject_id}}/randomization"): "randomize_subject",
            ("GET", f"{v1}/subjects/{{subject_id}}"): "get_subject",
            ("POST", f"{v1}/subjects/{{subject_id}}/dispensations"): "dispense_visit",
            ("GET", f"{v1}/kits/{{kit_number}}"): "lookup_kit",
            ("GET", f"{v1}/sites/{{site_id}}/inventory"): "get_site_inventory",
            ("GET", f"{v1}/shipments"): "list_shipments",
            ("POST", f"{v1}/shipments/{{shipment_id}}/receipt"): "receive_shipment",
            ("POST", f"{v1}/subjects/{{subject_id}}/unblinding"): "unblind_subject",
            ("GET", f"{v1}/randomization-list"): "get_randomization_list",
            ("GET", "/api/v1/pooled/allocations"): "export_pooled_allocations",
            ("GET", f"{v1}/audit"): "get_audit_trail",
            ("GET", "/health"): "get_health",
            ("GET", "/ready"): "get_readiness",
        }.items() <= ids.items()


class TestTagsAndInfo:
    def test_every_operation_has_one_declared_tag(self, spec: dict[str, Any]) -> None:
        declared = {t["name"]: t for t in spec["tags"]}
        assert all(t.get("description") for t in declared.values())
        for path, method, operation in operations(spec):
            assert len(operation.get("tags", [])) == 1, (method, path)
            assert operation["tags"][0] in declared, (method, path)
        assert set(declared) <= {t["name"] for t in TAGS}

    def test_versions(self, spec: dict[str, Any]) -> None:
        assert spec["info"]["version"] == CONTRACT_VERSION
        assert spec["info"]["x-service-version"] == __version__


class TestTypes:
    @pytest.mark.parametrize(
        "schema", ["DispensationCreate", "RandomizationCreate", "UnscheduledCreate"]
    )
    def test_weight_is_a_number(self, spec: dict[str, Any], schema: str) -> None:
        weight = spec["components"]["schemas"][schema]["properties"]["weight_kg"]
        types = [weight, *weight.get("anyOf", [])]
        assert {t.get("type") for t in types} - {None} <= {"number", "null"}
        assert any(t.get("type") == "number" and t.get("exclusiveMinimum") == 0 for t in types)

    def test_times_and_dates_have_formats(self, spec: dict[str, Any]) -> None:
        for name, schema in spec["components"]["schemas"].items():
            for field, prop in schema.get("properties", {}).items():
                variants = [prop, *prop.get("anyOf", [])]
                typed = [v for v in variants if v.get("type") not in (None, "null")]
                if field.endswith("_at") and field != "warning_at":
                    assert [v.get("format") for v in typed] == ["date-time"], (name, field)
                if field.endswith("_date") or field in ("expiry", "on"):
                    assert [v.get("format") for v in typed] == ["date"], (name, field)
                # A Decimal published as "number or string" is what generators stumble on.
                assert {str(v.get("type")) for v in typed} != {"number", "string"}, (name, field)

    def test_an_optional_body_is_its_model(self, spec: dict[str, Any]) -> None:
        path = "/api/v1/studies/{study}/subjects/{subject_id}/randomization"
        body = spec["paths"][path]["post"]["requestBody"]
        assert not body.get("required", False)
        assert body["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/RandomizationCreate"
        }


def bodies(spec: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, media type object) of every request body and every 2xx answer."""
    for path, method, operation in operations(spec):
        for media_type, media in operation.get("requestBody", {}).get("content", {}).items():
            yield f"{method} {path} request {media_type}", media
        for status, response in operation["responses"].items():
            if status.startswith("2"):
                for media_type, media in response.get("content", {}).items():
                    yield f"{method} {path} {status} {media_type}", media


class TestExamples:
    def test_every_body_and_success_has_a_valid_example(self, spec: dict[str, Any]) -> None:
        missing, invalid = [], []
        for where, media in bodies(spec):
            schema = media.get("schema", {})
            found = [media["example"]] if "example" in media else []
            found += resolve(spec, schema).get("examples", [])
            if not found:
                missing.append(where)
            if schema.get("format") == "binary":
                continue
            for example in found:
                invalid += [f"{where}: {e}" for e in validate(spec, schema, example)]
        assert missing == []
        assert invalid == []

    def test_component_examples_match_their_schemas(self, spec: dict[str, Any]) -> None:
        errors = []
        for name, schema in spec["components"]["schemas"].items():
            for example in schema.get("examples", []):
                ref = {"$ref": f"#/components/schemas/{name}"}
                errors += [f"{name}: {e}" for e in validate(spec, ref, example)]
        assert errors == []

    def test_no_example_names_a_real_arm_or_kit_type(self, spec: dict[str, Any]) -> None:
        text = json.dumps(spec)
        assert [w for w in BLINDED_WORDS if w in text] == []

    def test_arms_appear_only_in_unblinded_answers(self, spec: dict[str, Any]) -> None:
        def names_an_arm(node: Any) -> bool:
            text = json.dumps(node)
            return '"arm"' in text or "ARM_" in text

        for path, method, operation in operations(spec):
            if operation["operationId"] in UNBLINDED or path == "/api/v1/studies/{study}":
                continue  # the study's arms by label are public to its readers
            seen = [operation.get("requestBody", {})] + [
                r for s, r in operation["responses"].items() if s.startswith("2")
            ]
            for node in seen:
                expanded = [resolve(spec, {"$ref": r}) for r in refs(node)]
                nested = [resolve(spec, {"$ref": r}) for n in expanded for r in refs(n)]
                assert not names_an_arm([node, *expanded, *nested]), (method, path)


class TestProblems:
    def test_every_listed_code_is_in_the_problem_table(self, spec: dict[str, Any]) -> None:
        known: dict[str, set[int]] = {c: {s} for c, (s, _d) in OTHER_PROBLEMS.items()}
        for cls in _domain_errors():
            try:
                doc = problem_doc(cls)
            except KeyError:
                continue
            known.setdefault(doc.code, set()).add(doc.status)
        for path, method, operation in operations(spec):
            listed = operation["x-iwrs-problems"]
            for entry in listed:
                assert entry["status"] in known.get(entry["code"], set()), (method, path, entry)

    def test_responses_and_description_follow_the_list(self, spec: dict[str, Any]) -> None:
        for path, method, operation in operations(spec):
            statuses = {str(p["status"]) for p in operation["x-iwrs-problems"]}
            errors = {s for s in operation["responses"] if s[0] in "45"}
            assert errors == statuses, (method, path)
            for status in statuses:
                content = operation["responses"][status]["content"]
                assert list(content) == ["application/problem+json"]
                assert content["application/problem+json"]["schema"] == {
                    "$ref": "#/components/schemas/Problem"
                }
            for entry in operation["x-iwrs-problems"]:
                assert f"`{entry['code']}`" in operation["description"], (method, path, entry)
                assert (
                    f"`{entry['code']}`"
                    in operation["responses"][str(entry["status"])]["description"]
                )

    def test_the_contract_codes_are_listed(self, spec: dict[str, Any]) -> None:
        v1 = "/api/v1/studies/{study}/subjects/{subject_id}"

        def codes(path: str) -> dict[str, int]:
            listed = spec["paths"][path]["post"]["x-iwrs-problems"]
            return {p["code"]: p["status"] for p in listed}

        assert {
            "subject_already_randomized": 409,
            "stratum_exhausted": 409,
            "insufficient_supply": 409,
            "site_not_active": 409,
            "invalid_stratum": 422,
            "forbidden": 403,
            "unauthorized": 401,
            "idempotency_key_reused": 422,
        }.items() <= codes(f"{v1}/randomization").items()
        assert {
            "visit_not_allowed": 409,
            "visit_already_dispensed": 409,
            "insufficient_supply": 409,
            "weight_out_of_range": 422,
        }.items() <= codes(f"{v1}/dispensations").items()

    def test_declared_answers_name_known_codes(self) -> None:
        for cls in _domain_errors():
            if cls in STATUS_BY_ERROR or any(c in STATUS_BY_ERROR for c in cls.__mro__):
                assert problem_doc(cls).code == cls.code
        with pytest.raises(KeyError):
            problem_doc("no_such_code")


def _domain_errors() -> Iterator[type[DomainError]]:
    pending: list[type[DomainError]] = [DomainError]
    while pending:
        cls = pending.pop()
        yield cls
        pending += cls.__subclasses__()


@pytest.fixture
def kitted(loaded: Container) -> Container:
    generate(loaded)
    receive(loaded, "FR01")
    return loaded


class TestStillAccepted:
    def test_a_weight_as_a_numeric_string(
        self, client: TestClient, kitted: Container, login: Login
    ) -> None:
        randomized(kitted, "S-001", days_ago=3)
        response = client.post(
            dispense_url("S-001"), json={"visit": "D4", "weight_kg": "55"}, headers=login("edc")
        )
        assert response.status_code == 201, response.text

    @pytest.mark.parametrize("media_type", ["text/csv", "application/octet-stream"])
    def test_the_list_upload_takes_either_media_type(
        self, client: TestClient, login: Login, media_type: str
    ) -> None:
        # iris-7a generates its lists: the upload is read, then refused by the use case.
        response = client.post(
            "/api/v1/studies/iris-7a/randomization-list/upload",
            content=b"stratum,sequence,randomization_number,arm,block\n",
            headers={**login("unblinded_statistician"), "Content-Type": media_type},
        )
        assert (response.status_code, response.json()["code"]) == (
            409,
            "wrong_randomization_method",
        )

    def test_the_randomization_names_its_subject_in_the_dispensation(
        self, client: TestClient, kitted: Container, login: Login
    ) -> None:
        generate_list(kitted.uow(TEST_ACTOR), "test", "iris-7a")
        headers = login("edc")
        client.post(
            "/api/v1/studies/iris-7a/subjects",
            json={
                "subject_id": "S-9",
                "site_id": "FR01",
                "strata": {"shock": "yes", "age": "lt65"},
            },
            headers=headers,
        )
        response = client.post(
            "/api/v1/studies/iris-7a/subjects/S-9/randomization",
            json={"weight_kg": 70},
            headers=headers,
        )
        assert response.status_code == 201, response.text
        dispensation = response.json()["dispensation"]
        assert dispensation["subject_id"] == "S-9"
        assert dispensation["visit"] == "D1"
        assert dispensation["kits"]
