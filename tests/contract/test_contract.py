"""The contract test (issue 26, item 2): the served OpenAPI document generates clean Python and
TypeScript clients covering every operation, passes Spectral's `spectral:oas` ruleset, and the
contract's core flow runs through the generated Python client against the real server."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from app.adapters.api.app import create_app
from app.bootstrap import bootstrap
from app.settings import Settings
from tests.contract.conftest import GeneratedPython, Served, run_tool

HERE = Path(__file__).resolve().parent
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
# Only a service started for a simulation (IWRS_SIMULATION_CLOCK_FILE) serves these.
SIMULATION_PATHS = ("/api/v1/simulation/",)
OPERATION_ID = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")
GENERATED_CALL = re.compile(r'"method":\s*"(\w+)",\s*"url":\s*f?"([^"]+)"')

pytestmark = pytest.mark.contract


def operations(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """Every operation of the document by (METHOD, path)."""
    return {
        (method.upper(), path): op
        for path, item in document["paths"].items()
        for method, op in item.items()
        if method in METHODS
    }


def _template(path: str) -> str:
    return re.sub(r"\{[^}]*\}", "{}", path)


def test_served_document_is_the_production_one_plus_the_simulation_clock(
    served: Served, keys_dir: Path, tmp_path: Path
) -> None:
    """What the suite checks is what a production server serves: the test server differs by
    the simulation clock only."""
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'p.db'}", keys_dir=keys_dir)
    container = bootstrap(settings)
    try:
        production = create_app(container).openapi()
    finally:
        container.dispose()
    served_ops = {k: v.get("operationId") for k, v in operations(served.document).items()}
    production_ops = {k: v.get("operationId") for k, v in operations(production).items()}
    simulation = {k for k in served_ops if k[1].startswith(SIMULATION_PATHS)}
    assert simulation, "the test server should serve the simulation clock"
    assert not {k for k in production_ops if k[1].startswith(SIMULATION_PATHS)}
    assert {k: v for k, v in served_ops.items() if k not in simulation} == production_ops


def test_operation_ids_and_schema_names_are_chosen(served: Served) -> None:
    """Generated method and model names come from these: short snake_case operation ids, and
    schema names without module paths or framework-made `Body_` names."""
    problems: list[str] = []
    seen: dict[str, str] = {}
    for (method, path), op in sorted(operations(served.document).items()):
        op_id = op.get("operationId", "")
        where = f"{method} {path}"
        framework_made = "api_v1" in op_id or op_id.endswith(f"_{method.lower()}")
        if not OPERATION_ID.match(op_id) or framework_made or len(op_id) > 40:
            problems.append(f"{where}: operationId {op_id!r} is not a short snake_case name")
        if op_id in seen:
            problems.append(f"{where}: operationId {op_id!r} also names {seen[op_id]}")
        seen[op_id] = where
    for name in served.document.get("components", {}).get("schemas", {}):
        if "__" in name or name.startswith("Body_"):
            problems.append(f"schema {name!r}: a name made by the framework, not chosen")
    assert not problems, "\n".join(problems)


def test_python_client_generates_without_warning(generated_python: GeneratedPython) -> None:
    noise = [
        line
        for line in generated_python.output.splitlines()
        if line.strip() and not line.startswith("Generating ")
    ]
    said = f"openapi-python-client (exit {generated_python.returncode}):\n{generated_python.output}"
    assert not noise, said
    assert generated_python.returncode == 0, said


def test_python_client_has_every_operation(
    served: Served, generated_python: GeneratedPython
) -> None:
    generated: dict[tuple[str, str], str] = {}
    for module in sorted((generated_python.package / "api").glob("*/*.py")):
        for method, url in GENERATED_CALL.findall(module.read_text(encoding="utf-8")):
            generated[(method.upper(), _template(url))] = module.stem
    missing = [
        f"{method} {path} ({op.get('operationId')})"
        for (method, path), op in sorted(operations(served.document).items())
        if (method, _template(path)) not in generated
    ]
    assert generated, f"no operation found in {generated_python.package}"
    assert not missing, "left out of the generated Python client:\n" + "\n".join(missing)


def test_core_flow_through_the_generated_python_client(
    served: Served, generated_python: GeneratedPython, python_tools: Path, tmp_path: Path
) -> None:
    """tests/contract/flow.py, with the generated package, against the real server."""
    assert generated_python.package.is_dir(), generated_python.output
    config = tmp_path / "flow.json"
    config.write_text(
        json.dumps(
            {
                "url": served.url,
                "study": "iris-7a",
                "site": "FR01",
                "people": {
                    role: {"client_id": c.client_id, "client_secret": c.client_secret}
                    for role, c in served.people.items()
                },
            }
        ),
        encoding="utf-8",
    )
    code, output = run_tool(
        [str(python_tools / "python"), str(HERE / "flow.py"), str(config)],
        cwd=generated_python.root,
        env={"PYTHONPATH": str(generated_python.root)},
    )
    print(output)
    assert code == 0, f"the flow through the generated client:\n{output}"


def test_typescript_types_generate_and_type_check(
    served: Served, node_tools: Path, tmp_path: Path
) -> None:
    """openapi-typescript writes the types without a warning, and tsc (strict) accepts them
    and a module naming every operation by its operation id and by its path."""
    code, output = run_tool(
        [
            str(node_tools / "openapi-typescript"),
            str(served.document_path),
            "--output",
            str(tmp_path / "schema.d.ts"),
        ],
        cwd=tmp_path,
    )
    noise = [
        line
        for line in output.splitlines()
        if line.strip() and not line.startswith(("✨ openapi-typescript", "🚀 "))
    ]
    assert not noise, f"openapi-typescript warned:\n{output}"
    assert code == 0, f"openapi-typescript (exit {code}):\n{output}"
    lines = ['import type { operations, paths } from "./schema";', "export type Every = ["]
    for (method, path), op in sorted(operations(served.document).items()):
        op_id = op.get("operationId")
        if op_id:
            lines.append(f"  operations[{json.dumps(op_id)}],")
        lines.append(f"  paths[{json.dumps(path)}][{json.dumps(method.lower())}],")
    lines.append("];")
    (tmp_path / "every.ts").write_text("\n".join(lines) + "\n", encoding="utf-8")
    code, output = run_tool(
        [
            str(node_tools / "tsc"),
            "--noEmit",
            "--strict",
            "--target",
            "es2022",
            "--module",
            "es2022",
            "--moduleResolution",
            "bundler",
            "schema.d.ts",
            "every.ts",
        ],
        cwd=tmp_path,
    )
    assert code == 0, f"tsc on the generated types:\n{output}"


def test_spectral_finds_nothing(served: Served, node_tools: Path, tmp_path: Path) -> None:
    """`spectral:oas` finds nothing; a rule turned off says why (tests/contract/.spectral.yaml)."""
    results = tmp_path / "spectral.json"
    code, output = run_tool(
        [
            str(node_tools / "spectral"),
            "lint",
            str(served.document_path),
            "--ruleset",
            str(HERE / ".spectral.yaml"),
            "--format",
            "json",
            "--output",
            str(results),
            "--fail-severity",
            "hint",
        ],
        cwd=tmp_path,
    )
    if not results.exists():
        pytest.fail(f"spectral wrote no results (exit {code}):\n{output}")
    found = json.loads(results.read_text(encoding="utf-8") or "[]")
    severity = {0: "error", 1: "warning", 2: "info", 3: "hint"}
    listed = [
        f"{severity.get(r.get('severity'), r.get('severity'))} {r['code']}: {r['message']} "
        f"at {'.'.join(str(p) for p in r.get('path', []))}"
        for r in found
    ]
    assert not listed, f"spectral, {len(listed)} result(s):\n" + "\n".join(listed)
    assert code == 0, f"spectral (exit {code}):\n{output}"
