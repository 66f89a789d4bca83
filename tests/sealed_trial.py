"""A scripted trial for the sealed-size tests, and the reading of every sealed column.

`scripted_trial` runs a study through the use cases (study loaded, kits generated and
shipped, shipments received, list generated, subjects registered and randomized until every
arm is allocated, first visits dispensed). `sealed_lengths` reads every sealed column of the
database, found by scanning the metadata for LargeBinary columns named *_sealed (so a new
one is covered without a change here); `revealing` names those whose lengths could tell
values apart: a per-record column with more than one length, strata of one slot count (in
one study) with more than one, a definition that is not a whole number of buckets.
"""

from __future__ import annotations

import re
import tomllib
from collections import defaultdict
from decimal import Decimal
from typing import Any

from sqlalchemy import LargeBinary, select

from app.adapters.crypto.envelope import BUCKET, CODE_SIZE, SEED_SIZE, TRACE_SIZE, sealed_length
from app.adapters.db.models import Base, RandomizationListRow, StratumRow
from app.adapters.studyfiles.codec import canonical, parse_document, to_domain
from app.bootstrap import Container
from app.domain.access import Principal
from app.domain.roles import Role
from app.domain.study import study_problems
from app.services import randomization as rnd
from app.services import supply
from app.services.studies import load_study
from tests.conftest import STUDIES_DIR, TEST_ACTOR

# Per-record columns whose size the test knows (others found by the scan get the one-length
# rule too); the two columns sized by non-secret facts.
FIXED = {
    "allocation.arm_sealed": sealed_length(CODE_SIZE),
    "kit.kit_type_sealed": sealed_length(CODE_SIZE),
    "randomization_list.seed_sealed": sealed_length(SEED_SIZE),
    "allocation.trace_sealed": sealed_length(TRACE_SIZE),
}
BY_SLOT_COUNT = "stratum.slots_sealed"
BUCKETED = "study.definition_sealed"
STRATA = [
    {"shock": "yes", "age": "lt65"},
    {"shock": "no", "age": "ge65"},
    {"shock": "yes", "age": "ge65"},
    {"shock": "no", "age": "lt65"},
]


def sealed_columns() -> list[tuple[str, Any]]:
    """Every LargeBinary column named *_sealed in the schema, as ("table.column", column)."""
    found = [
        (f"{table.name}.{column.name}", column)
        for table in Base.metadata.sorted_tables
        for column in table.columns
        if isinstance(column.type, LargeBinary) and column.name.endswith("_sealed")
    ]
    assert {*FIXED, BY_SLOT_COUNT, BUCKETED} <= {name for name, _ in found}
    return found


def _example(name: str) -> dict[str, Any]:
    return tomllib.loads((STUDIES_DIR / f"{name}.toml").read_text(encoding="utf-8"))


def uneven() -> dict[str, Any]:
    """IRIS-7A with arm codes of 1, 4 and 9 characters, kit type codes of 1 and 17, and
    longer strata."""
    text = (STUDIES_DIR / "iris-7a.toml").read_text(encoding="utf-8")
    for old, new in [
        ("CYT107_QW", "BB12"),
        ("CYT107_BIW", "CCCCCCCCC"),
        ("KT_IL7", "K"),
        ("KT_PBO", "KT_PLACEBO_LONGER"),
    ]:
        text = text.replace(old, new)
    doc = tomllib.loads(re.sub(r"\bPLACEBO\b", "A", text))
    doc.update(slug="uneven", pooled_with=[])
    # Strata of 60+ slots: blocks of 3 and 6 give block numbers of one and two digits, so an
    # unpadded stratum's length would tell its block sizes.
    doc["randomization"]["cap_per_stratum"] = 60
    assert sorted(len(a["code"]) for a in doc["arms"]) == [1, 4, 9]
    return doc


def minimized() -> dict[str, Any]:
    """The uneven study allocated by minimization on shock, age and site."""
    doc = uneven()
    doc["slug"] = "minimized"
    doc["randomization"] = {
        "method": "minimization",
        "cap_per_stratum": 24,  # x 4 sites: 96 randomization numbers
        "minimization": {
            "factors": [{"factor": "shock"}, {"factor": "age", "weight": 0.5}, {"factor": "site"}],
            "probability": 0.8,
        },
    }
    return doc


STUDIES = {
    "iris-7a": lambda: _example("iris-7a"),
    "iris-7b": lambda: _example("iris-7b"),
    "uneven": uneven,
    "minimized": minimized,
}


def scripted_trial(container: Container, doc: dict[str, Any]) -> dict[str, int]:
    """Load, kits and shipments received, list, subjects randomized until every arm is
    allocated, two visits dispensed; returns the arms' allocation counts."""
    parsed = parse_document(doc, "test")
    study = to_domain(parsed)
    assert study_problems(study) == []
    document, _raw, sha = canonical(parsed)
    load_study(container.uow(TEST_ACTOR), study, document, sha)
    slug = study.slug
    sites = [s.code for s in study.sites if s.active]
    edc = Principal("edc-sizes", Role.EDC, frozenset({slug}))
    pharmacist = Principal("ph-sizes", Role.PHARMACIST, frozenset({slug}), {slug: frozenset(sites)})
    supply.generate_kits(container.uow(TEST_ACTOR), slug)
    with container.uow(TEST_ACTOR) as uow:
        shipments = uow.supply.shipments(slug)
    for shipment in shipments:
        supply.receive_shipment(container.uow(TEST_ACTOR), pharmacist, slug, shipment.code)
    rnd.generate_list(container.uow(TEST_ACTOR), "sizes", slug)
    arms = {arm: 0 for arm in study.arm_codes()}
    randomized: list[str] = []
    for i in range(40):
        site, strata = sites[i % len(sites)], STRATA[(i // len(sites)) % len(STRATA)]
        subject_id = f"{site}-{i:03d}"
        rnd.register_subject(container.uow(TEST_ACTOR), edc, slug, subject_id, site, strata)
        rnd.randomize(container.uow(TEST_ACTOR), edc, slug, subject_id, None)
        randomized.append(subject_id)
        if i >= 8 and all(arms.values()):
            break
        with container.uow(TEST_ACTOR) as uow:
            arms = {arm: 0 for arm in study.arm_codes()}
            for _subject, arm, _number in uow.lists.allocations(slug, "live"):
                arms[arm] += 1
    assert all(arms.values()), "every arm allocated"
    for subject_id in randomized[:2]:
        supply.record_dispensation(
            container.uow(TEST_ACTOR), pharmacist, slug, subject_id, "D1", Decimal("70")
        )
    return arms


def sealed_lengths(container: Container) -> dict[str, dict[Any, set[int]]]:
    """Every sealed column's envelope lengths, grouped by what may set them: nothing for a
    per-record column, (study, slot count) for strata."""
    found: dict[str, dict[Any, set[int]]] = {}
    with container.session_factory() as session:
        for name, column in sealed_columns():
            groups: dict[Any, set[int]] = defaultdict(set)
            if name == BY_SLOT_COUNT:
                rows = session.execute(
                    select(RandomizationListRow.study_id, StratumRow.length, column).join(
                        RandomizationListRow, RandomizationListRow.id == StratumRow.list_id
                    )
                )
                for study_id, length, sealed in rows:
                    groups[(study_id, length)].add(len(sealed))
            else:
                for sealed in session.scalars(select(column).where(column.is_not(None))):
                    groups[None].add(len(sealed))
            found[name] = dict(groups)
    return found


def revealing(lengths: dict[str, dict[Any, set[int]]]) -> list[str]:
    """The sealed columns (of `sealed_lengths`) whose lengths could tell values apart."""
    found: list[str] = []
    for column, groups in lengths.items():
        if column == BY_SLOT_COUNT:
            for (_study_id, slots), seen in sorted(groups.items()):
                if len(seen) != 1:
                    found.append(f"{column}: strata of {slots} slots, lengths {sorted(seen)}")
        elif column == BUCKETED:
            for length in sorted(groups.get(None, set())):
                if (length - sealed_length(0) + 4) % BUCKET:
                    found.append(f"{column}: {length} bytes, not whole buckets")
        else:
            seen = groups.get(None, set())
            if len(seen) > 1 or (column in FIXED and seen and seen != {FIXED[column]}):
                found.append(f"{column}: lengths {sorted(seen)}")
    return found
