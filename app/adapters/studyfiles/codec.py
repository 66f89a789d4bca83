"""Read a study file, validate it, and turn the document into the domain `Study`.

Errors name the file, the field (a dotted path) and the reason, all of them at once.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections.abc import Mapping
from fractions import Fraction
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from app.adapters.studyfiles.schema import StudyDoc
from app.domain.errors import InvalidStudyDefinition
from app.domain.study import (
    DEFAULT_DISCONTINUATION_REASONS,
    DEFAULT_SCREEN_FAILURE_REASONS,
    Arm,
    Depot,
    Dispensing,
    EligibilityQuestion,
    KitType,
    Level,
    Minimization,
    MinimizationFactor,
    Randomization,
    Site,
    StratificationFactor,
    Study,
    Supply,
    SupplyLevels,
    UnblindingPolicy,
    Unscheduled,
    Visit,
    WeightBand,
    study_problems,
)


class StudyFileError(InvalidStudyDefinition):
    """The study definition file is malformed or contradicts itself."""

    code = "invalid_study_definition"


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(file)"


def parse_document(data: Mapping[str, Any], source: str) -> StudyDoc:
    try:
        return StudyDoc.model_validate(data)
    except ValidationError as exc:
        problems = [f"{source}: {_loc(e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise StudyFileError(f"{source}: {len(problems)} problem(s)", problems) from None


def to_domain(doc: StudyDoc) -> Study:
    return Study(
        slug=doc.slug,
        title=doc.title,
        protocol=doc.protocol,
        description=doc.description,
        pooled_with=tuple(doc.pooled_with),
        arms=tuple(Arm(a.code, a.label) for a in doc.arms),
        allocation_ratio=dict(doc.allocation_ratio),
        factors=tuple(
            StratificationFactor(
                f.code, f.label, tuple(Level(lv.code, lv.label) for lv in f.levels)
            )
            for f in doc.stratification_factors
        ),
        depots=tuple(Depot(d.code, d.name, d.country) for d in doc.depots),
        sites=tuple(
            Site(s.code, s.name, s.country, s.depot, s.active, s.timezone) for s in doc.sites
        ),
        visits=tuple(Visit(v.code, v.day, v.window_before, v.window_after) for v in doc.visits),
        kit_types=tuple(KitType(k.code, k.description) for k in doc.kit_types),
        dispensing=Dispensing(
            kit_type_by_arm_visit={
                (arm, visit): kit_type
                for arm, by_visit in doc.dispensing.kit_types.items()
                for visit, kit_type in by_visit.items()
            },
            weight_bands=tuple(
                WeightBand(b.min_kg, b.max_kg, b.quantity) for b in doc.dispensing.weight_bands
            ),
        ),
        randomization=Randomization(
            method=doc.randomization.method,
            block_sizes=tuple(doc.randomization.block_sizes),
            stratify_by_site=doc.randomization.stratify_by_site,
            cap_per_stratum=doc.randomization.cap_per_stratum,
            low_warning=doc.randomization.low_warning,
            minimization=None
            if doc.randomization.minimization is None
            else Minimization(
                factors=tuple(
                    MinimizationFactor(f.factor, f.weight)
                    for f in doc.randomization.minimization.factors
                ),
                imbalance=doc.randomization.minimization.imbalance,
                probability=doc.randomization.minimization.probability,
            ),
        ),
        supply=Supply(
            levels={
                k: SupplyLevels(v.initial, v.trigger, v.resupply)
                for k, v in doc.supply.levels.items()
            },
            do_not_dispense_days=doc.supply.do_not_dispense_days,
            kits_per_lot=doc.supply.kits_per_lot,
            lot_shelf_life_days=doc.supply.lot_shelf_life_days,
            resupply_rounds=doc.supply.resupply_rounds,
            type_share=None
            if doc.supply.type_share is None
            else Fraction(str(doc.supply.type_share)).limit_denominator(1000),
        ),
        unblinding=UnblindingPolicy(
            roles=frozenset(doc.unblinding.roles),
            fresh_token_seconds=doc.unblinding.fresh_token_seconds,
        ),
        discontinuation_reasons=DEFAULT_DISCONTINUATION_REASONS
        if doc.subjects is None or doc.subjects.discontinuation_reasons is None
        else tuple(doc.subjects.discontinuation_reasons),
        unscheduled=None
        if doc.unscheduled is None or not doc.unscheduled.allowed
        else Unscheduled(doc.unscheduled.kit_rule, doc.unscheduled.max_per_subject),
        screen_failure_reasons=DEFAULT_SCREEN_FAILURE_REASONS
        if doc.subjects is None or doc.subjects.screen_failure_reasons is None
        else tuple(doc.subjects.screen_failure_reasons),
        rescreening=doc.subjects is not None and doc.subjects.rescreening,
        max_rescreens=1 if doc.subjects is None else doc.subjects.max_rescreens,
        eligibility=tuple(
            EligibilityQuestion(q.code, q.text, {} if q.text_fr is None else {"fr": q.text_fr})
            for q in doc.eligibility
        ),
    )


def canonical(doc: StudyDoc) -> tuple[dict[str, Any], bytes, str]:
    """The document as JSON-able data, its canonical bytes and their SHA-256."""
    data = doc.model_dump(mode="json")
    raw = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return data, raw, hashlib.sha256(raw).hexdigest()


def decode_stored(raw: bytes) -> tuple[dict[str, Any], Study]:
    """A stored canonical document back to its data and domain study."""
    data = json.loads(raw)
    return data, to_domain(StudyDoc.model_validate(data))


def read_study_file(path: Path) -> tuple[Study, dict[str, Any], str]:
    """Parse and fully validate one file: the study, its canonical document and its hash."""
    source = str(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StudyFileError(f"{source}: no such file", [f"{source}: no such file"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        msg = f"{source}: cannot read: {exc}"
        raise StudyFileError(msg, [msg]) from None
    except tomllib.TOMLDecodeError as exc:
        msg = f"{source}: not valid TOML: {exc}"
        raise StudyFileError(msg, [msg]) from None
    doc = parse_document(data, source)
    study = to_domain(doc)
    problems = [f"{source}: {p}" for p in study_problems(study)]
    if problems:
        raise StudyFileError(f"{source}: {len(problems)} problem(s)", problems)
    document, _raw, sha = canonical(doc)
    return study, document, sha
