"""About 100,000 kits (4 sites x 2 kit types x (initial + 3 resupplies) of 3,125)
generated (masked numbers, sealed types, lots) and stored on
PostgreSQL, with the initial shipments to every active site, in one transaction.

Run: .venv/bin/python bench/bench_kits.py [--sites 4 --level 3125]
Target (issue 7): 100,000 kits in under 5 s on the 2-core machine.
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
from app.services import supply
from app.services.studies import load_study
from app.settings import Settings
from bench.common import fresh_database, report, synthetic_study, versus

ACTOR = Actor("bench", "operator")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sites", type=int, default=4)
    parser.add_argument(
        "--level", type=int, default=3125, help="initial and resupply level per kit type and site"
    )
    parser.add_argument("--backend", choices=["postgres", "sqlite"], default="postgres")
    args = parser.parse_args()
    doc = synthetic_study(args.sites, cap=24)
    doc["supply"]["kits_per_lot"] = 5000
    for levels in doc["supply"]["levels"].values():
        levels.update(initial=args.level, trigger=args.level // 4, resupply=args.level)
    parsed = parse_document(doc, "bench")
    study = to_domain(parsed)
    document, _raw, sha = canonical(parsed)
    with tempfile.TemporaryDirectory() as keys, fresh_database(args.backend) as url:
        init_keys(Path(keys) / "k")
        engine = make_engine(url)
        migrate.upgrade(engine)
        container = bootstrap(Settings(database_url=url, keys_dir=Path(keys) / "k"), engine=engine)
        load_study(container.uow(ACTOR), study, document, sha)
        started = time.perf_counter()
        result = supply.generate_kits(container.uow(ACTOR), "bench")
        elapsed = time.perf_counter() - started
        container.dispose()
    report(
        f"kits_{args.backend}",
        {
            "kits": result.kits,
            "lots": result.lots,
            "initial_shipments": len(result.shipments),
            "generated_sealed_stored_s": versus(elapsed, 5.0 * result.kits / 100_000),
            "kits_per_s": round(result.kits / elapsed),
        },
    )


if __name__ == "__main__":
    main()
