"""A throwaway service for a simulation: its own keys, database, studies, lists, kits and
clients, served by `iwrs serve` in a subprocess with a simulation clock."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from app.adapters.paths import studies_dir

ROLES_AT_SITES = ("pharmacist", "investigator")


@dataclass
class Credentials:
    client_id: str
    client_secret: str


@dataclass
class StudySetup:
    slug: str
    sites: list[str]
    visits: list[tuple[str, int]]  # (code, day)
    factors: dict[str, list[str]]
    edc: Credentials
    pharmacists: dict[str, Credentials] = field(default_factory=dict)
    investigators: dict[str, Credentials] = field(default_factory=dict)


@dataclass
class Setup:
    url: str
    admin: Credentials
    statistician: Credentials
    supply_manager: Credentials
    studies: dict[str, StudySetup]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    return str(value)


def _dump_toml(doc: dict[str, Any]) -> str:
    """Enough TOML for a study definition (tables, arrays of tables, inline values)."""
    lines: list[str] = []

    def table(prefix: str, data: dict[str, Any]) -> None:
        scalars = {
            k: v
            for k, v in data.items()
            if not isinstance(v, dict | list)
            or (isinstance(v, list) and not (v and isinstance(v[0], dict)))
        }
        nested = {k: v for k, v in data.items() if k not in scalars}
        if prefix and scalars:
            lines.append(f"[{prefix}]")
        for key, value in scalars.items():
            lines.append(f"{key} = {_toml_value(value)}")
        for key, value in nested.items():
            name = f"{prefix}.{key}" if prefix else key
            if isinstance(value, dict):
                table(name, value)
            else:
                for item in value:
                    lines.append(f"[[{name}]]")
                    for k, v in item.items():
                        lines.append(f"{k} = {_toml_value(v)}")

    table("", doc)
    return "\n".join(lines) + "\n"


def kit_list_rounds(doc: dict[str, Any], subjects: int) -> int:
    """The `supply.resupply_rounds` a sponsor would plan for `subjects` spread over the
    study's active sites: every visit of each site's share at the heaviest weight band, in
    resupply levels, beyond the initial shipment (never fewer than the file's own)."""
    active = [s for s in doc["sites"] if s.get("active", True)] or doc["sites"]
    per_site = -(-subjects // len(active))
    heaviest = max(int(band["quantity"]) for band in doc["dispensing"]["weight_bands"])
    level = max(int(lv["resupply"]) for lv in doc["supply"]["levels"].values())
    needed = -(-per_site * len(doc["visits"]) * heaviest // level)
    return max(int(doc["supply"].get("resupply_rounds", 3)), needed)


def study_file(
    slug: str,
    sites: int | None,
    workdir: Path,
    subjects: int | None = None,
    type_share: float | None = None,
) -> Path:
    """The example study, or a copy of it with `sites` active sites, for `subjects`
    subjects a kit list planned for them (`kit_list_rounds`), and `supply.type_share`."""
    source = studies_dir() / f"{slug}.toml"
    if sites is None and subjects is None and type_share is None:
        return source
    doc = tomllib.loads(source.read_text(encoding="utf-8"))
    if sites is not None:
        prefix = doc["sites"][0]["code"][:2]
        depot = doc["sites"][0]["depot"]
        tz = doc["sites"][0].get("timezone", "UTC")
        doc["sites"] = [
            {
                "code": f"{prefix}{i:02d}",
                "name": f"Simulated site {i}",
                "country": prefix,
                "depot": depot,
                "active": True,
                "timezone": tz,
            }
            for i in range(1, sites + 1)
        ]
    if subjects is not None:
        doc["supply"]["resupply_rounds"] = kit_list_rounds(doc, subjects)
    if type_share is not None:
        doc["supply"]["type_share"] = type_share
    target = workdir / f"{slug}.toml"
    target.write_text(_dump_toml(doc), encoding="utf-8")
    return target


class OwnService:
    """Sets up and serves a fresh service in `workdir`; stop() ends it."""

    def __init__(
        self,
        workdir: Path,
        sites: int | None,
        database_url: str | None,
        workers: int,
        log: Any,
        subjects: int | None = None,
        type_share: float | None = None,
    ) -> None:
        self.workdir = workdir
        self.port = _free_port()
        self.env = {
            **os.environ,
            "IWRS_DATABASE_URL": database_url or f"sqlite:///{workdir / 'simulation.db'}",
            "IWRS_KEYS_DIR": str(workdir / "keys"),
            "IWRS_SIMULATION_CLOCK_FILE": str(workdir / "clock"),
            "IWRS_HOST": "127.0.0.1",
            "IWRS_PORT": str(self.port),
            "IWRS_LOG_LEVEL": "WARNING",
        }
        self.sites = sites
        self.subjects = subjects
        self.type_share = type_share
        self.workers = workers
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def iwrs(self, *args: str) -> str:
        result = subprocess.run(  # noqa: S603 - our own command, fixed arguments
            [sys.executable, "-m", "app.adapters.cli.main", *args],
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"iwrs {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    def client(self, *args: str) -> Credentials:
        data = json.loads(self.iwrs("clients", "create", *args, "--json"))
        return Credentials(data["client_id"], data["client_secret"])

    def start(self) -> Setup:
        self.iwrs("keys", "init")
        self.iwrs("db", "upgrade")
        studies: dict[str, StudySetup] = {}
        for slug in ("iris-7a", "iris-7b"):
            path = study_file(slug, self.sites, self.workdir, self.subjects, self.type_share)
            self.iwrs("studies", "load", str(path))
            self.iwrs("lists", "generate", "--study", slug)
            doc = tomllib.loads(path.read_text(encoding="utf-8"))
            active = [s["code"] for s in doc["sites"] if s.get("active", True)]
            setup = StudySetup(
                slug=slug,
                sites=active,
                visits=[(v["code"], int(v["day"])) for v in doc["visits"]],
                factors={
                    f["code"]: [lv["code"] for lv in f["levels"]]
                    for f in doc.get("stratification_factors", [])
                },
                edc=self.client("--study", slug, "--role", "edc", "--name", f"{slug}-edc"),
            )
            for site in active:
                setup.pharmacists[site] = self.client(
                    "--study",
                    slug,
                    "--role",
                    "pharmacist",
                    "--site",
                    site,
                    "--name",
                    f"{slug}-{site}-pharmacy",
                )
                setup.investigators[site] = self.client(
                    "--study",
                    slug,
                    "--role",
                    "investigator",
                    "--site",
                    site,
                    "--name",
                    f"{slug}-{site}-investigator",
                )
            studies[slug] = setup
        both = ("--study", "iris-7a", "--study", "iris-7b")
        setup_all = Setup(
            url=f"http://127.0.0.1:{self.port}",
            admin=self.client("--role", "admin", "--name", "simulation-admin"),
            statistician=self.client(*both, "--role", "unblinded_statistician", "--name", "stats"),
            supply_manager=self.client(*both, "--role", "supply_manager", "--name", "supply"),
            studies=studies,
        )
        self.process = subprocess.Popen(  # noqa: S603 - our own command
            [
                sys.executable,
                "-m",
                "app.adapters.cli.main",
                "serve",
                "--workers",
                str(self.workers),
            ],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=open(self.workdir / "service.log", "wb"),  # noqa: SIM115 - the process owns it
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{setup_all.url}/ready", timeout=2).status_code == 200:
                    return setup_all
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"the service did not become ready; see {self.workdir}/service.log")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process = None
