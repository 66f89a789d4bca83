"""The contract test (issue 26): what an integrator does first, done in CI.

A real server (`iwrs serve` in a subprocess, tests/reliability/service.py) over a fresh
SQLite database with both example studies, their initial shipments in transit, one API client
per role and the simulation clock; its served /openapi.json is what every test reads. The
tools run from their own directories (tests/contract/tools.py), never the project's venv.

The suite runs once, in the SQLite pass (IWRS_TEST_BACKENDS naming sqlite), as the browser
walks do. Without node/npm or the network it skips, saying why, unless
IWRS_TEST_REQUIRE_CONTRACT=1 (as in .ci/run), where it fails instead.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import httpx
import pytest

from app.domain.roles import Role
from tests.conftest import BACKENDS
from tests.contract import tools
from tests.reliability.service import Credentials, Service, study_document

REQUIRE_CONTRACT = os.environ.get("IWRS_TEST_REQUIRE_CONTRACT") == "1"
STUDIES = ("iris-7a", "iris-7b")
STUDY = "iris-7a"
SITE = "FR01"
PACKAGE = "iwrs_client"
GENERATOR_CONFIG = {
    # Stable names whatever the document's title: the flow imports this package.
    "project_name_override": "iwrs-client",
    "package_name_override": PACKAGE,
}
TOOL_TIMEOUT = 300  # seconds, for one generator or linter run


def unavailable(message: str) -> NoReturn:
    if REQUIRE_CONTRACT:
        pytest.fail(f"{message} (IWRS_TEST_REQUIRE_CONTRACT=1)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="module", autouse=True)
def _sqlite_pass_only() -> None:  # module scope: before the server is started
    if "sqlite" not in BACKENDS:
        pytest.skip("the contract test runs once, in the SQLite pass (its own database)")


@dataclass
class Served:
    service: Service
    people: dict[str, Credentials]
    document: dict[str, Any]
    document_path: Path

    @property
    def url(self) -> str:
        return self.service.url


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, keys_dir: Path) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("contract")
    service = Service(f"sqlite:///{root / 'contract.db'}", keys_dir, root)
    try:
        for slug in STUDIES:
            service.load(study_document(slug), receive=False)  # the flow receives FR01's
        people = {
            "edc": service.client(Role.EDC, [STUDY]),
            "investigator": service.client(Role.INVESTIGATOR, [STUDY], [SITE]),
            "pharmacist": service.client(Role.PHARMACIST, [STUDY], [SITE]),
            "statistician": service.client(Role.UNBLINDED_STATISTICIAN, list(STUDIES)),
            "admin": service.client(Role.ADMIN, []),
        }
        service.start(workers=1)
        response = httpx.get(f"{service.url}/openapi.json", timeout=30)
        assert response.status_code == 200, response.text
        document = response.json()
        path = root / "openapi.json"
        path.write_text(json.dumps(document, indent=2), encoding="utf-8")
        yield Served(service, people, document, path)
    finally:
        service.close()


@pytest.fixture(scope="session")
def python_tools() -> Path:
    try:
        return tools.python_tools()
    except tools.Unavailable as exc:
        unavailable(f"openapi-python-client could not be installed: {exc}")


@pytest.fixture(scope="session")
def node_tools() -> Path:
    try:
        return tools.node_tools()
    except tools.Unavailable as exc:
        unavailable(str(exc))


def run_tool(
    args: list[str],
    *,
    cwd: Path,
    path_first: Path | None = None,
    env: dict[str, str] | None = None,
) -> tuple[int, str]:
    """A tool's exit code and its whole output (stdout then stderr)."""
    env = {**os.environ, **(env or {})}
    if path_first is not None:
        env["PATH"] = f"{path_first}{os.pathsep}{env.get('PATH', '')}"
    done = subprocess.run(  # noqa: S603 - our pinned tools, fixed arguments
        args,
        capture_output=True,
        text=True,
        check=False,
        timeout=TOOL_TIMEOUT,
        cwd=cwd,
        env=env,
    )
    return done.returncode, (done.stdout + done.stderr).strip()


@dataclass
class GeneratedPython:
    returncode: int
    output: str
    root: Path  # on PYTHONPATH: holds the package

    @property
    def package(self) -> Path:
        return self.root / PACKAGE


@pytest.fixture(scope="module")
def generated_python(
    served: Served, python_tools: Path, tmp_path_factory: pytest.TempPathFactory
) -> GeneratedPython:
    work = tmp_path_factory.mktemp("python-client")
    config = work / "config.json"
    config.write_text(json.dumps(GENERATOR_CONFIG), encoding="utf-8")
    out = work / "iwrs-client"
    # The generator formats its output with ruff, which it finds on PATH (its own venv's).
    code, output = run_tool(
        [
            str(python_tools / "openapi-python-client"),
            "generate",
            "--path",
            str(served.document_path),
            "--config",
            str(config),
            "--meta",
            "setup",
            "--output-path",
            str(out),
        ],
        cwd=work,
        path_first=python_tools,
    )
    return GeneratedPython(code, output, out)
