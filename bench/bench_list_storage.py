"""A 1,000,000-slot list (1,000 strata x 1,000) generated, sealed and stored on PostgreSQL.

Run: .venv/bin/python bench/bench_list_storage.py [--sites 250 --cap 1000]
Target (issue 5): under 10 s on the 2-core machine.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.adapters.crypto.keyring import init_keys
from app.adapters.db import migrate
from app.adapters.db.engine import make_engine
from app.adapters.studyfiles.codec import canonical, parse_document, to_domain
from app.bootstrap import bootstrap
from app.domain.audit import Actor
from app.services import randomization as rnd
from app.services.studies import load_study
from app.settings import Settings
from bench.common import fresh_database, report, synthetic_study, versus

ACTOR = Actor("bench", "operator")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sites", type=int, default=250, help="4 strata per site")
    parser.add_argument("--cap", type=int, default=1000, help="slots per stratum")
    parser.add_argument("--backend", choices=["postgres", "sqlite"], default="postgres")
    args = parser.parse_args()
    doc = parse_document(synthetic_study(args.sites, args.cap), "bench")
    study = to_domain(doc)
    document, _raw, sha = canonical(doc)
    with tempfile.TemporaryDirectory() as keys, fresh_database(args.backend) as url:
        init_keys(Path(keys) / "k")
        engine = make_engine(url)
        migrate.upgrade(engine)
        container = bootstrap(Settings(database_url=url, keys_dir=Path(keys) / "k"), engine=engine)
        load_study(container.uow(ACTOR), study, document, sha)

        started = time.perf_counter()
        plans = rnd.plan_lists(study, "live", b"\x01" * 32)
        in_memory = time.perf_counter() - started
        slots = sum(len(p.slots) for p in plans)

        started = time.perf_counter()
        result = rnd.generate_list(container.uow(ACTOR), "bench", "bench")
        stored = time.perf_counter() - started
        container.dispose()
    report(
        f"list_storage_{args.backend}",
        {
            "strata": len(plans),
            "slots": slots,
            "in_memory_s": round(in_memory, 3),
            "in_memory_slots_per_s": round(slots / in_memory),
            "generated_sealed_stored_s": versus(stored, 10.0)
            if args.sites == 250
            else round(stored, 3),
            "stored_slots_per_s": round(result.slots / stored),
        },
    )


if __name__ == "__main__":
    main()
