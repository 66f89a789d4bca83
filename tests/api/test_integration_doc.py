"""docs/integration.md and docs/api-changelog.md name only what the service has: every
operation they write exists with that method, every problem code they give with a status
is answered with that status, and the integration guide's error table names real codes."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

import app.adapters.api.app  # noqa: F401 - every router, hence every error class, imported
from app.adapters.api import problems
from app.adapters.api.introspect import api_routes
from app.domain.errors import DomainError

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
API_SOURCE = ROOT / "app" / "adapters" / "api"

METHOD_PATH = re.compile(r"\b(GET|POST|PUT|PATCH|DELETE)\s+`?(/[A-Za-z0-9_{}.\-/]+)")
ANY_API_PATH = re.compile(r"(/api/v1/[A-Za-z0-9_{}.\-/]*)")
STATUS_CODE = re.compile(r"\b([45]\d\d) `([a-z][a-z_]+)`")
# Problems rendered outside the domain error table: problem(503, "code", ...) and the like.
RENDERED = re.compile(r'(?:problem|_oauth_error)\(\s*(\d{3}),\s*"([a-z_]+)"')
STORAGE_REFUSAL = re.compile(r'return "([a-z_]+)", "')  # app.py's 503 refusals


def _subclasses(cls: type[DomainError]) -> Iterator[type[DomainError]]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def known_codes() -> dict[str, set[int]]:
    """Every problem code the service can answer, with its statuses."""
    codes: dict[str, set[int]] = {}
    for cls in _subclasses(DomainError):
        codes.setdefault(cls.code, set()).add(problems.status_for(cls.__new__(cls)))
    for status, code in problems._STATUS_CODES.items():
        codes.setdefault(code, set()).add(status)
    for source in API_SOURCE.rglob("*.py"):
        text = source.read_text(encoding="utf-8")
        for status, code in RENDERED.findall(text):
            codes.setdefault(code, set()).add(int(status))
        for code in STORAGE_REFUSAL.findall(text):
            codes.setdefault(code, set()).add(503)
    return codes


def _template(path: str) -> re.Pattern[str]:
    parts = [r"[^/]+" if re.fullmatch(r"\{[^}]+\}", p) else re.escape(p) for p in path.split("/")]
    return re.compile("/".join(parts) + "$")


def _mentioned(text: str, relative_prefix: str) -> set[tuple[str | None, str]]:
    """(method or None, path) for every operation the text names."""
    found: set[tuple[str | None, str]] = set()
    for method, path in METHOD_PATH.findall(text):
        if path.startswith(("/studies", "/pooled")):  # the changelog's paths under /api/v1
            path = relative_prefix + path
        found.add((method, path.rstrip(".,")))
    found |= {(None, p.rstrip(".,")) for p in ANY_API_PATH.findall(text)}
    return found


@pytest.fixture
def operations(client: TestClient) -> list[tuple[str, re.Pattern[str]]]:
    served = client.app
    assert isinstance(served, FastAPI)
    return [(r.method, _template(r.path)) for r in api_routes(served)]


@pytest.mark.parametrize("name", ["integration.md", "api-changelog.md", "api-versioning.md"])
def test_every_operation_named_exists(
    name: str, operations: list[tuple[str, re.Pattern[str]]]
) -> None:
    text = (DOCS / name).read_text(encoding="utf-8")
    named = _mentioned(text, "/api/v1")
    if name == "api-versioning.md":  # its example is a made-up retired operation
        named = {(m, p) for m, p in named if "/things/" not in p}
    assert named or name == "api-versioning.md"
    missing = sorted(
        f"{method or '*'} {path}"
        for method, path in named
        if not any(
            pattern.match(path) and (method is None or method == m) for m, pattern in operations
        )
    )
    assert not missing, f"{name} names operations the service does not have: {missing}"


@pytest.mark.parametrize("name", ["integration.md", "api-changelog.md"])
def test_every_problem_code_named_exists_with_its_status(name: str) -> None:
    codes = known_codes()
    text = (DOCS / name).read_text(encoding="utf-8")
    named = STATUS_CODE.findall(text)
    assert named
    wrong = sorted(
        f"{status} {code} (the service: {sorted(codes.get(code, set())) or 'no such code'})"
        for status, code in named
        if int(status) not in codes.get(code, set())
    )
    assert not wrong, f"{name} names problem codes the service does not answer: {wrong}"


def test_the_error_table_names_only_real_codes() -> None:
    codes = known_codes()
    text = (DOCS / "integration.md").read_text(encoding="utf-8")
    section = text.split("## Errors: act on the `code`", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "`" in line]
    assert len(rows) > 20
    for row in rows:
        first_cell = row.split("|")[1]
        for code in re.findall(r"`([a-z_]+)`", first_cell):
            assert code in codes, f"the error table names {code!r}, which the service never answers"


def test_the_contracts_randomization_and_dispensing_codes_are_in_the_guide() -> None:
    text = (DOCS / "integration.md").read_text(encoding="utf-8")
    for code in (
        "subject_already_randomized",
        "stratum_exhausted",
        "insufficient_supply",
        "site_not_active",
        "invalid_stratum",
        "forbidden",
        "visit_not_allowed",
        "visit_already_dispensed",
        "weight_out_of_range",
        "idempotency_key_reused",
        "token_not_fresh",
        "too_many_requests",
    ):
        assert f"`{code}`" in text, code
