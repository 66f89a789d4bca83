"""Randomizations and dispensations per second through the HTTP API, with several clients,
on PostgreSQL (or SQLite), with the load generator on the same machine.

Run: .venv/bin/python bench/bench_api.py [--clients 16 --workers 2 --subjects 3000]
The load comes from bench/loadgen.py (asyncio keep-alive connections, one process).
Targets (issues 5 and 7): >= 400 randomizations/s and >= 300 dispensations/s with 16
clients, p99 under 100 ms, on the 2-core machine.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.adapters.crypto.keyring import init_keys
from app.adapters.db import migrate
from app.adapters.db.engine import make_engine
from app.adapters.studyfiles.codec import canonical, parse_document, to_domain
from app.bootstrap import bootstrap
from app.domain.access import Principal
from app.domain.audit import Actor
from app.domain.roles import Role
from app.services import randomization as rnd
from app.services import supply
from app.services.clients import create_client
from app.services.studies import load_study
from app.settings import Settings
from bench.common import fresh_database, postgres_via, report, synthetic_study, versus
from bench.cpu import own_cpu_seconds, postgres_cpu_seconds, tree_cpu_seconds
from bench.loadgen import run_load, wait_until_ready
from bench.rss import RssSampler

ACTOR = Actor("bench", "operator")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def prepare(url: str, keys: Path, sites: int, subjects: int) -> dict[str, Any]:
    """Study, list, kits received at every site, subjects registered, clients made."""
    # The example study's own supply levels: a realistic site holds a few dozen kits.
    per_site = -(-subjects // sites)
    doc = synthetic_study(sites, cap=max(24, per_site * 3 + 12))
    doc["supply"]["kits_per_lot"] = 5000
    # Enough kits on each shelf for its subjects' two visits, so no run waits for a
    # resupply shipment that nobody receives during the benchmark.
    for levels in doc["supply"]["levels"].values():
        levels["initial"] = levels["resupply"] = max(levels["initial"], 4 * per_site + 8)
    parsed = parse_document(doc, "bench")
    study = to_domain(parsed)
    document, _raw, sha = canonical(parsed)
    engine = make_engine(url)
    migrate.upgrade(engine)
    container = bootstrap(Settings(database_url=url, keys_dir=keys), engine=engine)
    load_study(container.uow(ACTOR), study, document, sha)
    rnd.generate_list(container.uow(ACTOR), "bench", "bench")
    kits = supply.generate_kits(container.uow(ACTOR), "bench")
    admin = Principal("bench", Role.ADMIN, None)
    for shipment in kits.shipments:
        pharmacist = Principal(
            "bench", Role.PHARMACIST, frozenset({"bench"}), {"bench": frozenset({shipment.site})}
        )
        supply.receive_shipment(container.uow(ACTOR), pharmacist, "bench", shipment.code, [])
    edc = Principal("bench", Role.EDC, frozenset({"bench"}))
    codes = [s.code for s in study.sites]
    ids = []
    for i in range(subjects):
        subject_id = f"B-{i:05d}"
        rnd.register_subject(
            container.uow(ACTOR),
            edc,
            "bench",
            subject_id,
            codes[i % len(codes)],
            {"shock": "yes" if i % 2 else "no", "age": "lt65" if i % 3 else "ge65"},
        )
        ids.append(subject_id)
    issued = create_client(
        container.uow(ACTOR),
        container.hasher,
        name="bench-edc",
        role=Role.EDC,
        studies=["bench"],
        sites=[],
    )
    container.dispose()
    del admin
    return {"subjects": ids, "edc": (issued.client.client_id, issued.secret)}


def _cpu_per_request(server: int, run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run a load; its figures with the CPU each request cost the server (supervisor and
    workers), PostgreSQL and this load generator, in ms."""
    before = (tree_cpu_seconds(server), postgres_cpu_seconds(), own_cpu_seconds())
    found = run()
    after = (tree_cpu_seconds(server), postgres_cpu_seconds(), own_cpu_seconds())
    n = max(1, found["requests"])
    for name, was, now in zip(("server", "postgres", "loadgen"), before, after, strict=True):
        found[f"cpu_{name}_ms"] = round(1000 * (now - was) / n, 2)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--subjects", type=int, default=3000)
    parser.add_argument("--sites", type=int, default=0, help="default: one per 20 subjects")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, fresh_database(args.backend) as url:
        keys = Path(tmp) / "keys"
        init_keys(keys)
        sites = args.sites or max(16, args.subjects // 20)
        prepared = prepare(url, keys, sites, args.subjects)
        port = _free_port()
        clock = Path(tmp) / "clock"
        env = {
            **os.environ,
            "IWRS_DATABASE_URL": url,
            "IWRS_KEYS_DIR": str(keys),
            "IWRS_PORT": str(port),
            "IWRS_LOG_LEVEL": "WARNING",
            "IWRS_SIMULATION_CLOCK_FILE": str(clock),
        }
        server = subprocess.Popen(  # noqa: S603 - our own service
            [
                sys.executable,
                "-m",
                "app.adapters.cli.main",
                "serve",
                "--workers",
                str(args.workers),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            wait_until_ready(base)
            client_id, secret = prepared["edc"]
            token = httpx.post(
                f"{base}/oauth/token",
                data={
                    "grant_type": "client_credentials",
                    "client_id": client_id,
                    "client_secret": secret,
                },
            ).json()["access_token"]

            def each_subject(endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
                """POST body to .../subjects/{id}/<endpoint> for every subject, timed."""
                return _cpu_per_request(
                    server.pid,
                    lambda: run_load(
                        base,
                        token,
                        prepared["subjects"],
                        args.clients,
                        lambda sid: (f"/api/v1/studies/bench/subjects/{sid}/{endpoint}", body),
                    ),
                )

            rss = RssSampler(server.pid).start()
            randomized = each_subject("randomization", {"weight_kg": 70})
            clock.write_text(str(3 * 86400))  # the D4 visit is due
            dispensed = each_subject("dispensations", {"visit": "D4", "weight_kg": 71})
            rss.stop()
        finally:
            server.terminate()
            server.wait(timeout=20)
    report(
        f"api_{args.backend}",
        {
            "clients": args.clients,
            "sites": sites,
            "postgres_via": postgres_via() if args.backend == "postgres" else "",
            "server_workers": args.workers,
            "randomizations": randomized["requests"],
            "randomization_failures": randomized["failures"],
            "randomizations_per_s": versus(randomized["per_s"], 400, lower_is_better=False),
            "randomization_p50_ms": round(randomized["p50_ms"], 1),
            "randomization_p99_ms": versus(randomized["p99_ms"], 100),
            **{f"randomization_{k}": v for k, v in randomized.items() if k.startswith("cpu_")},
            "dispensations": dispensed["requests"],
            "dispensation_failures": dispensed["failures"],
            "dispensations_per_s": versus(dispensed["per_s"], 300, lower_is_better=False),
            "dispensation_p50_ms": round(dispensed["p50_ms"], 1),
            "dispensation_p99_ms": versus(dispensed["p99_ms"], 100),
            **{f"dispensation_{k}": v for k, v in dispensed.items() if k.startswith("cpu_")},
            "first_failure": randomized["first_failure"] or dispensed["first_failure"],
            **rss.figures(),
        },
    )


if __name__ == "__main__":
    main()
