"""The floor under the API's randomization figures: the same transaction, driven by pgbench.

Run: .venv/bin/python bench/pgbench_floor.py [-c 16 -j 2 -T 10]
         [--shape service|essential|unchained]
         [--keep-scripts DIR] [--show-sql [-v]]

One API randomization (POST .../randomization with a weight, so the first visit's kits are
dispensed in the same transaction) is one transaction on the service's own schema. A study
is prepared through the service on a fresh PostgreSQL database named
iwrs_bench_pgbench_<pid> (dropped afterwards), then cloned in SQL to as many sites, strata,
registered subjects and kits as the run can consume (`--max-tps` x `-T`; 8 subjects and
32 kits per site, so a site's stock read returns 32 down to 16 kits, as bench_api's sites
hold about 30; consecutive subjects are at different sites). pgbench (`-M prepared`, as
psycopg prepares repeated statements) runs a script with `-c` clients and `-j` threads for
`-T` seconds; its per-transaction log gives p50/p99. Three scripts (`--shape`, all by
default, each on its own subjects):

- service: the statements the service ran for one randomization, in its order (SERVICE);
- essential: the same locks and writes with one statement per step (ESSENTIAL), what the
  service could come down to;
- unchained: SERVICE without its audit call, not a design (every change is audited) but the
  measure of what the study's single hash chain costs: its head is held from the call to
  the end of the COMMIT, so a study's transactions commit one at a time.

pgbench does not do the rest of the service's work (HTTP, JSON, the ORM, opening the sealed
list and sealing the arm, the audit hash), so the gap between these figures and bench_api's
is the cost of the service above the database. `--show-sql` prints the statements the
service runs today for one randomization (captured in-process with a SQLAlchemy cursor
hook), to compare with SERVICE when the hot path changes.
"""

from __future__ import annotations

import argparse
import glob
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import ADMIN_URL, libpq_host, postgres_via, report, versus

STUDY = "bench"
TEMPLATE_SITE = "BX0001"
TEMPLATE_SUBJECT = "B-00000"
# Stand-ins for what the service computes in Python (sealed arm, audit hashes).
SEALED = "\\x" + "ab" * 66  # an arm envelope is ~132 bytes
HASH = "5" * 64

# One randomization, statement for statement, in the order the service runs them (session 5:
# 15 statements between BEGIN and COMMIT, the audit chain's three in one call, all with
# bound parameters and prepared by psycopg; before BEGIN the pool's liveness check, ";",
# not sent here; see --show-sql for today's).
# Differences: the stratum key is derived in the subject's statement (in Python in the
# service), the stock read also returns the previous kit id (lag) so that pgbench can pick
# two kits (\aset keeps the last row), values computed in Python are constants.
# Variables (-D): :study, :list, :client_id_text, :client_pk from the prepared database;
# :actor, :sealed, :genesis, :hash for the values the service computes; :nclients and :k
# (a per-client counter from 0) with pgbench's own :client_id pick a fresh subject.
SERVICE = r"""
\set k :k + 1
\set n :base + :k * :nclients + :client_id + 1
BEGIN;
-- the caller's client, still enabled with this secret (the transaction's first statement)
SELECT secret_version, disabled_at FROM api_client WHERE client_id = :client_id_text;
-- the study, share-locked against a concurrent study lock
SELECT id, slug, version, definition_sha256, definition_sealed, mode, locked_at, locked_by
  FROM study WHERE slug = 'bench' FOR SHARE;
-- lock the subject (its stratum key is derived in the same statement here, in Python there)
SELECT subject.id AS pk, subject.site_id AS site_id, site.code AS site_code,
       subject.status, subject.strata, subject.registered_at, subject.randomized_at,
       subject.mode, subject.randomization_number, subject.unblinded, subject.ended_at,
       site.code || '|shock=' || (subject.strata ->> 'shock') || '|age='
         || (subject.strata ->> 'age') AS skey
  FROM subject JOIN site ON site.id = subject.site_id
  WHERE subject.study_id = :study AND subject.subject_code = 'P-' || :n
  FOR UPDATE OF subject \gset s_
SELECT id, mode, version, method FROM randomization_list
  WHERE study_id = :study AND mode = 'live' AND status = 'active';
-- lock the site (first visit servable), read its stock on the shelf and in transit
SELECT id FROM site WHERE study_id = :study AND code = :s_site_code FOR UPDATE;
SELECT kit.id, kit.kit_number, kit.kit_type_sealed, kit.expiry_date, kit.status, lot.code,
       lag(kit.id) OVER (ORDER BY kit.id) AS prev
  FROM kit JOIN lot ON lot.id = kit.lot_id
  WHERE kit.site_id = :s_site_id AND kit.status IN ('at_site', 'in_transit')
  ORDER BY kit.id \aset kit_
-- lock the stratum's cursor (with its sealed slots), advance it
SELECT id, next_sequence, length, low_warned_at, slots_sealed FROM stratum
  WHERE list_id = :list AND key = :s_skey FOR UPDATE \gset st_
\set next :st_next_sequence + 1
UPDATE stratum SET next_sequence = :next WHERE id = :st_id;
-- the allocation and the subject's new state
INSERT INTO allocation (subject_pk, list_id, stratum_id, sequence, stratum_key,
    randomization_number, arm_sealed, trace_sealed, allocated_at)
  VALUES (:s_pk, :list, :st_id, :st_next_sequence, :s_skey, 10000000 + :n, :sealed, NULL,
    now());
UPDATE subject SET status = 'randomized', randomized_at = now(),
    randomization_number = 10000000 + :n WHERE id = :s_pk;
-- the first visit's dispensation: two kits, locked in id order, then moved
INSERT INTO dispensation (subject_pk, visit, weight_kg, quantity, dispensed_at, dispensed_by)
  VALUES (:s_pk, 'D1', 70, 2, now(), :actor) RETURNING id AS dispensation \gset
SELECT id FROM kit WHERE id IN (:kit_id, :kit_prev) AND study_id = :study
  AND status = 'at_site' ORDER BY id FOR UPDATE;
UPDATE kit SET status = 'dispensed', subject_pk = :s_pk, dispensation_id = :dispensation,
    updated_at = now() WHERE id IN (:kit_id, :kit_prev);
-- the audit chain: the database locks its head, hashes and appends the two events and
-- moves the head in one call (the parts of each event's canonical JSON are stand-ins of
-- about the service's length)
SELECT audit_append('bench', :actor, 'edc', NULL,
    ARRAY['subject.randomized', 'dispensation.created'], ARRAY['subject', 'dispensation'],
    ARRAY['P-' || :n, 'P-' || :n || '/D1'], ARRAY['P-' || :n, 'P-' || :n],
    ARRAY[NULL, NULL]::text[], ARRAY[NULL, NULL]::text[],
    ARRAY['{"randomization_number": ' || (10000000 + :n) || ', "stratum": "' || :s_skey
        || '", "site": "' || :s_site_code
        || '", "mode": "live", "list_version": 1, "method": "permuted_block"}',
      '{"visit": "D1", "weight_kg": "70", "quantity": 2, "kits": ["' || :kit_id
        || '", "' || :kit_prev || '"]}'],
    ARRAY[repeat('x', 240), repeat('x', 240)], ARRAY[repeat('y', 40), repeat('y', 40)],
    ARRAY['}', '}']);
COMMIT;
"""

# The same effects with one statement per step that needs the database: the locks (study
# shared, subject, site, stratum cursor, kits, audit chain head), the stock read, the writes.
# No authentication reads, no re-reads: what the service could come down to.
ESSENTIAL = r"""
\set k :k + 1
\set n :base + :k * :nclients + :client_id + 1
BEGIN;
SELECT id, locked_at FROM study WHERE slug = 'bench' FOR SHARE;
SELECT subject.id AS pk, subject.site_id AS site_id, site.code AS site_code,
       subject.status, subject.strata, subject.mode,
       site.code || '|shock=' || (subject.strata ->> 'shock') || '|age='
         || (subject.strata ->> 'age') AS skey
  FROM subject JOIN site ON site.id = subject.site_id
  WHERE subject.study_id = :study AND subject.subject_code = 'P-' || :n
  FOR UPDATE OF subject \gset s_
SELECT id FROM site WHERE id = :s_site_id FOR UPDATE;
SELECT id, kit_number, kit_type_sealed, expiry_date, lag(id) OVER (ORDER BY id) AS prev
  FROM kit WHERE study_id = :study AND status = 'at_site' AND site_id = :s_site_id
  ORDER BY id \aset kit_
SELECT id, next_sequence, length, low_warned_at, slots_sealed FROM stratum
  WHERE list_id = :list AND key = :s_skey FOR UPDATE \gset st_
\set next :st_next_sequence + 1
UPDATE stratum SET next_sequence = :next WHERE id = :st_id;
INSERT INTO allocation (subject_pk, list_id, stratum_id, sequence, stratum_key,
    randomization_number, arm_sealed, trace_sealed, allocated_at)
  VALUES (:s_pk, :list, :st_id, :st_next_sequence, :s_skey, 10000000 + :n, :sealed, NULL,
    now());
UPDATE subject SET status = 'randomized', randomized_at = now(),
    randomization_number = 10000000 + :n WHERE id = :s_pk;
INSERT INTO dispensation (subject_pk, visit, weight_kg, quantity, dispensed_at, dispensed_by)
  VALUES (:s_pk, 'D1', 70, 2, now(), :actor) RETURNING id AS dispensation \gset
UPDATE kit SET status = 'dispensed', subject_pk = :s_pk, dispensation_id = :dispensation,
    updated_at = now()
  WHERE id IN (:kit_id, :kit_prev) AND study_id = :study AND status = 'at_site';
SELECT seq, hash FROM audit_chain_head WHERE chain = 'bench' FOR UPDATE \gset head_
\set seq1 :head_seq + 1
\set seq2 :head_seq + 2
UPDATE audit_chain_head SET seq = :seq2, hash = :hash, updated_at = now()
  WHERE chain = 'bench';
INSERT INTO audit_event (chain, seq, occurred_at, actor_id, actor_role, action, entity_type,
    entity_id, subject_id, reason, before, after, request_id, prev_hash, hash)
  VALUES ('bench', :seq1, now(), :actor, 'edc', 'subject.randomized', 'subject',
      'P-' || :n, 'P-' || :n, NULL, NULL,
      ('{"randomization_number": ' || (10000000 + :n) || ', "stratum": "' || :s_skey
        || '", "site": "' || :s_site_code
        || '", "mode": "live", "list_version": 1, "method": "permuted_block"}')::jsonb,
      NULL, :head_hash, :hash),
    ('bench', :seq2, now(), :actor, 'edc', 'dispensation.created', 'dispensation',
      'P-' || :n || '/D1', 'P-' || :n, NULL, NULL,
      ('{"visit": "D1", "weight_kg": "70", "quantity": 2, "kits": ["' || :kit_id
        || '", "' || :kit_prev || '"]}')::jsonb,
      NULL, :hash, :hash);
COMMIT;
"""


def _without_audit(script: str) -> str:
    """The script with its audit statement (the comment before it and the call) cut out."""
    start = script.index("-- the audit chain:")
    end = script.index("COMMIT;", start)
    return script[:start] + script[end:]


# Not a design: every state change is audited. It measures what the study's one hash chain
# costs: each transaction holds the chain's head from audit_append to the end of its COMMIT,
# so the study's randomizations commit one at a time, WAL flush included.
UNCHAINED = _without_audit(SERVICE)

SCRIPTS = {"service": SERVICE, "essential": ESSENTIAL, "unchained": UNCHAINED}
DEFAULT_SHAPES = ("service", "essential", "unchained")


def script_statements(script: str) -> int:
    """How many SQL statements a script sends per transaction."""
    return sum(
        1
        for line in script.splitlines()
        if line.rstrip().endswith(";") or "\\gset" in line or "\\aset" in line
    )


def pgbench_binary() -> str:
    """IWRS_PGBENCH, else pgbench on PATH, else the newest /usr/lib/postgresql/*/bin/pgbench."""
    named = os.environ.get("IWRS_PGBENCH") or shutil.which("pgbench")
    if named:
        return named
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pgbench"),
        key=lambda p: int(re.sub(r"\D", "", p.split("/")[4]) or 0),
    )
    if not found:
        raise SystemExit("pgbench not found (set IWRS_PGBENCH)")
    return found[-1]


@contextmanager
def scratch_database() -> Iterator[str]:
    """A new PostgreSQL database named iwrs_bench_pgbench_<pid>, dropped afterwards."""
    name = f"iwrs_bench_pgbench_{os.getpid()}"
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        # Retried: the database server may be restarting (the reliability suite does that).
        for attempt in range(30):
            try:
                with admin.connect() as conn:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                break
            except OperationalError:
                if attempt == 29:
                    print(f"warning: could not drop database {name}", file=sys.stderr)
                admin.dispose()
                time.sleep(1)
        admin.dispose()


def _clone(conn: Connection, table: str, overrides: dict[str, str], source: str) -> int:
    """INSERT INTO table SELECT every column but id from the template rows `t` of `source`,
    with `overrides` (column -> SQL expression) in place of the template's values."""
    columns = conn.execute(
        text(
            "SELECT column_name FROM information_schema.columns WHERE table_name = :t "
            "AND column_name <> 'id' ORDER BY ordinal_position"
        ),
        {"t": table},
    ).scalars()
    names = list(columns)
    values = [overrides.get(c, f't."{c}"') for c in names]
    cols = ", ".join(f'"{c}"' for c in names)
    sql = f"INSERT INTO {table} ({cols}) SELECT {', '.join(values)} {source}"
    return conn.execute(text(sql)).rowcount


def prepare(url: str, sites: int, per_site: int, kits_per_site: int) -> dict[str, Any]:
    """The service prepares a small study (sealed list, kits received, an EDC client); SQL
    clones its first site `sites` times, each with its strata, `kits_per_site` kits at the
    site and `per_site` registered subjects P-1, P-2, ... (site by site in turn)."""
    from bench.bench_api import prepare as prepare_study

    with tempfile.TemporaryDirectory() as tmp:
        from app.adapters.crypto.keyring import init_keys

        keys = Path(tmp) / "keys"
        init_keys(keys)
        prepared = prepare_study(url, keys, 4, 4)
    engine = create_engine(url)
    subjects = sites * per_site
    with engine.begin() as conn:
        ids = conn.execute(
            text(
                "SELECT study.id, randomization_list.id FROM study JOIN randomization_list "
                "ON randomization_list.study_id = study.id AND randomization_list.status = "
                "'active' WHERE study.slug = :slug"
            ),
            {"slug": STUDY},
        ).one()
        study_id, list_id = int(ids[0]), int(ids[1])
        client_pk = conn.execute(
            text("SELECT id FROM api_client WHERE client_id = :c"), {"c": prepared["edc"][0]}
        ).scalar_one()
        template = f"t.study_id = {study_id} AND t.code = '{TEMPLATE_SITE}'"
        _clone(
            conn,
            "site",
            {"code": "'PX' || g", "name": "'pgbench site ' || g"},
            f"FROM site t, generate_series(1, {sites}) g WHERE {template}",
        )
        new_sites = "JOIN site s ON s.study_id = s0.study_id AND s.code LIKE 'PX%'"
        strata = _clone(
            conn,
            "stratum",
            {"key": f"replace(t.key, '{TEMPLATE_SITE}', s.code)", "site_id": "s.id"},
            f"FROM stratum t JOIN site s0 ON s0.id = t.site_id AND s0.code = '{TEMPLATE_SITE}' "
            f"{new_sites} WHERE t.list_id = {list_id}",
        )
        at_site = conn.execute(
            text(
                "SELECT count(*) FROM kit JOIN site ON site.id = kit.site_id "
                "WHERE site.code = :c AND kit.status = 'at_site'"
            ),
            {"c": TEMPLATE_SITE},
        ).scalar_one()
        repeat = max(1, math.ceil(kits_per_site / max(1, at_site)))
        kits = _clone(
            conn,
            "kit",
            {"kit_number": "'P' || s.id || '.' || t.id || '.' || g", "site_id": "s.id"},
            f"FROM kit t JOIN site s0 ON s0.id = t.site_id AND s0.code = '{TEMPLATE_SITE}' "
            f"AND t.status = 'at_site' {new_sites} CROSS JOIN generate_series(1, {repeat}) g",
        )
        _clone(
            conn,
            "subject",
            {
                "subject_code": "'P-' || g",
                "site_id": "s.id",
                "status": "'registered'",
                "strata": "jsonb_build_object("
                "'shock', CASE WHEN g % 2 = 1 THEN 'yes' ELSE 'no' END, "
                "'age', CASE WHEN g % 3 <> 0 THEN 'lt65' ELSE 'ge65' END)",
            },
            f"FROM subject t CROSS JOIN generate_series(1, {subjects}) g "
            f"JOIN site s ON s.study_id = t.study_id AND s.code = 'PX' || (1 + (g - 1) % {sites}) "
            f"WHERE t.study_id = {study_id} AND t.subject_code = '{TEMPLATE_SUBJECT}'",
        )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
    engine.dispose()
    return {
        "study": study_id,
        "list": list_id,
        "client_id": prepared["edc"][0],
        "client_pk": int(client_pk),
        "sites": sites,
        "strata": strata,
        "kits": kits,
        "subjects": subjects,
    }


def _percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def run_pgbench(
    url: str,
    prepared: dict[str, Any],
    shape: str,
    base: int,
    clients: int,
    threads: int,
    seconds: int,
    workdir: Path,
) -> dict[str, Any]:
    """Run one script (subjects from P-<base + 1> on); tps, latency average, p50/p99 (from
    --log) and per-statement latencies."""
    script = workdir / f"{shape}.sql"
    script.write_text(SCRIPTS[shape], encoding="utf-8")
    target = make_url(url)
    command = [
        pgbench_binary(),
        "-n",  # no vacuum of pgbench's own tables: there are none
        "-M",
        "prepared",
        "-r",
        "-c",
        str(clients),
        "-j",
        str(threads),
        "-T",
        str(seconds),
        "-f",
        str(script),
        "--log",
        f"--log-prefix={workdir / shape}",
        "-D",
        "k=0",
        "-D",
        f"base={base}",
        "-D",
        f"nclients={clients}",
        "-D",
        f"study={prepared['study']}",
        "-D",
        f"list={prepared['list']}",
        "-D",
        f"client_pk={prepared['client_pk']}",
        "-D",
        f"client_id_text={prepared['client_id']}",
        "-D",
        f"sealed={SEALED}",
        "-D",
        f"genesis={'0' * 64}",
        "-D",
        f"hash={HASH}",
        "-D",
        "actor=client:bench",  # a literal with a colon in the script would read as a variable
        "-h",
        libpq_host(url),
        "-p",
        str(target.port or 5432),
        "-U",
        target.username or "postgres",
        str(target.database),
    ]
    env = {**os.environ}
    if target.password:
        env["PGPASSWORD"] = target.password
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)  # noqa: S603
    out = done.stdout
    errors = [line for line in done.stderr.splitlines() if "error" in line.lower()]
    latencies: list[float] = []
    for log in workdir.glob(f"{shape}.[0-9]*"):
        for line in log.read_text().splitlines():
            fields = line.split()
            # client_id transaction_no time script_no time_epoch time_us [lag]; time in us
            if len(fields) >= 6 and fields[2].isdigit():
                latencies.append(int(fields[2]) / 1000)
    latencies.sort()

    def grab(pattern: str) -> float | None:
        found = re.search(pattern, out)
        return float(found.group(1)) if found else None

    statements = []
    in_statements = False
    for line in out.splitlines():
        if line.startswith("statement latencies"):
            in_statements = True
            continue
        if in_statements:
            parts = line.split(None, 2)
            if len(parts) == 3 and re.fullmatch(r"[\d.]+", parts[0]) and parts[2][0] != "\\":
                statements.append((float(parts[0]), " ".join(parts[2].split())))
    return {
        "returncode": done.returncode,
        "transactions": int(grab(r"actually processed: (\d+)") or 0),
        "failed": int(grab(r"number of failed transactions: (\d+)") or 0),
        "tps": grab(r"tps = ([\d.]+) \(without initial connection time\)") or 0.0,
        "latency_avg_ms": grab(r"latency average = ([\d.]+) ms"),
        "p50_ms": statistics.median(latencies) if latencies else None,
        "p99_ms": _percentile(latencies, 0.99) if latencies else None,
        "errors": errors[:3],
        "statements": len(statements),
        "slowest_statements_ms": sorted(statements, reverse=True)[:5],
        "command": " ".join(command[: command.index("-h")]),
    }


def written_rows(url: str) -> dict[str, int]:
    """What the committed transactions left: one allocation, two kits, two audit events each."""
    engine = create_engine(url)
    with engine.connect() as conn:
        counts = conn.execute(
            text(
                "SELECT (SELECT count(*) FROM allocation WHERE stratum_key LIKE 'PX%'), "
                "(SELECT count(*) FROM kit WHERE status = 'dispensed' AND kit_number LIKE 'P%'), "
                "(SELECT count(*) FROM audit_event WHERE subject_id LIKE 'P-%')"
            )
        ).one()
    engine.dispose()
    return {"allocations": counts[0], "kits_dispensed": counts[1], "audit_events": counts[2]}


def run(
    clients: int = 16,
    threads: int = 2,
    seconds: int = 10,
    max_tps: int = 3000,
    per_site: int = 8,
    kits_per_site: int = 32,
    shapes: tuple[str, ...] = DEFAULT_SHAPES,
    keep_scripts: Path | None = None,
) -> dict[str, Any]:
    """Prepare a scratch database, run pgbench with each script shape on it (each on its own
    subjects), drop it; the figures, by shape."""
    budget = max_tps * seconds
    sites = max(1, math.ceil(budget * len(shapes) / per_site))
    out: dict[str, Any] = {"clients": clients, "threads": threads, "seconds": seconds}
    with scratch_database() as url, tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        prepared = prepare(url, sites, per_site, max(kits_per_site, 2 * per_site))
        out.update(
            sites=prepared["sites"],
            subjects_prepared=prepared["subjects"],
            kits_prepared=prepared["kits"],
            prepare_s=round(time.perf_counter() - started, 1),
        )
        before = written_rows(url)
        for i, shape in enumerate(shapes):
            result = run_pgbench(
                url, prepared, shape, i * budget, clients, threads, seconds, Path(tmp)
            )
            written = written_rows(url)
            rows = {key: written[key] - before[key] for key in written}
            before = written
            out[shape] = {
                "statements_per_transaction": result["statements"],
                "transactions": result["transactions"],
                "failed": result["failed"],
                "tps": round(result["tps"], 1),
                "latency_avg_ms": result["latency_avg_ms"],
                "p50_ms": None if result["p50_ms"] is None else round(result["p50_ms"], 2),
                "p99_ms": None if result["p99_ms"] is None else round(result["p99_ms"], 2),
                **rows,
                "slowest_statements_ms": result["slowest_statements_ms"],
                "pgbench_errors": result["errors"],
                "subjects_exhausted": result["transactions"] >= budget - clients,
                "pgbench": result["command"],
            }
        if keep_scripts is not None:
            keep_scripts.mkdir(parents=True, exist_ok=True)
            for shape in shapes:
                shutil.copy(Path(tmp) / f"{shape}.sql", keep_scripts / f"{shape}.sql")
    return out


def show_service_sql(width: int = 160) -> None:
    """Print the statements the service runs for one randomization, numbered."""
    from fastapi.testclient import TestClient
    from sqlalchemy import event

    from app.adapters.api.app import create_app
    from app.adapters.crypto.keyring import init_keys
    from app.adapters.db import hot
    from app.adapters.db.engine import make_engine
    from app.bootstrap import bootstrap
    from app.settings import Settings
    from bench.bench_api import prepare as prepare_study

    with scratch_database() as url, tempfile.TemporaryDirectory() as tmp:
        keys = Path(tmp) / "keys"
        init_keys(keys)
        prepared = prepare_study(url, keys, 16, 4)
        engine = make_engine(url)
        statements: list[str] = []

        trips: list[int] = []  # statements per round trip

        @event.listens_for(engine, "before_cursor_execute")
        def _capture(*args: Any) -> None:
            statements.append(" ".join(str(args[2]).split()))
            trips.append(1)

        def _capture_hot(batch: list[str]) -> None:
            # The hot statements run on the driver, a batch in one round trip (app.adapters.db.hot).
            statements.extend(" ".join(sql.split()) for sql in batch)
            trips.append(len(batch))

        hot.trace = _capture_hot

        container = bootstrap(
            Settings(database_url=url, keys_dir=keys, simulation_clock_file=Path(tmp) / "clock"),
            engine=engine,
        )
        with TestClient(create_app(container=container)) as http:
            client_id, secret = prepared["edc"]
            token = http.post(
                "/oauth/token",
                data={
                    "grant_type": "client_credentials",
                    "client_id": client_id,
                    "client_secret": secret,
                },
            ).json()["access_token"]
            for subject in prepared["subjects"][:2]:  # the second one is printed: caches warm
                statements.clear()
                trips.clear()
                response = http.post(
                    f"/api/v1/studies/{STUDY}/subjects/{subject}/randomization",
                    json={"weight_kg": 70},
                    headers={"Authorization": f"Bearer {token}"},
                )
        container.dispose()
        hot.trace = None
    print(
        f"one randomization ({response.status_code}): {len(statements)} statements in"
        f" {len(trips)} round trips (statements per trip: {trips}), besides BEGIN"
    )
    for i, statement in enumerate(statements, start=1):
        print(f"{i:>3}. {statement[:width]}")
    for shape, script in SCRIPTS.items():
        print(f"pgbench {shape} script: {script_statements(script)} SQL statements per transaction")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--clients", type=int, default=16)
    parser.add_argument("-j", "--threads", type=int, default=2)
    parser.add_argument("-T", "--seconds", type=int, default=10)
    parser.add_argument(
        "--max-tps", type=int, default=3000, help="subjects and kits are prepared for this rate"
    )
    parser.add_argument("--per-site", type=int, default=8, help="subjects per site")
    parser.add_argument("--kits-per-site", type=int, default=32)
    parser.add_argument(
        "--shape",
        choices=[*SCRIPTS, "all"],
        default="all",
        help="service: the statements the service ran; essential: one per step; unchained:"
        " the service's without the audit call (default all)",
    )
    parser.add_argument("--keep-scripts", type=Path, help="copy the pgbench scripts there")
    parser.add_argument("--show-sql", action="store_true", help="the service's statements")
    parser.add_argument("-v", "--verbose", action="store_true", help="with --show-sql: whole")
    args = parser.parse_args()
    if args.show_sql:
        warnings.simplefilter("ignore")
        show_service_sql(100_000 if args.verbose else 160)
        return
    shapes = DEFAULT_SHAPES if args.shape == "all" else (args.shape,)
    found = run(
        args.clients,
        args.threads,
        args.seconds,
        args.max_tps,
        args.per_site,
        args.kits_per_site,
        shapes,
        args.keep_scripts,
    )
    figures = {k: v for k, v in found.items() if k not in shapes}
    figures["postgres_via"] = postgres_via()
    for shape in shapes:
        result = found[shape]
        if result["subjects_exhausted"]:
            print(f"warning: {shape}: every prepared subject was used; raise --max-tps")
        result["tps"] = versus(result["tps"], 400, lower_is_better=False)
        if result["p99_ms"] is not None:
            result["p99_ms"] = versus(result["p99_ms"], 100)
        result["slowest_statements_ms"] = [
            f"{ms} {sql[:50]}" for ms, sql in result["slowest_statements_ms"][:3]
        ]
        figures.update({f"{shape}.{key}": value for key, value in result.items()})
    report("pgbench_floor", figures)


if __name__ == "__main__":
    main()
