"""The statistician's list work: QC report, upload, stratum extension.

Extension is reproducible: a stratum's list is regenerated from the same seed and label
("{study}|{mode}|{stratum}") with a larger minimum length. Because blocks are drawn one
after another from the stream, the longer list starts with the stored one, and only the
new slots are added; their randomization numbers are drawn under the label
"{study}|{mode}|numbers|{stratum}|extension-{n}", skipping numbers already in the list.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from app.domain.audit import AuditEvent
from app.domain.errors import DomainError, StudyNotFound
from app.domain.listqc import ListQC, qc_report, regenerate_and_compare
from app.domain.listupload import UploadProblem, parse_uploaded_list
from app.domain.randomization import generate_stratum_list, number_range, randomization_numbers
from app.domain.study import RandomizationMethod, Study
from app.domain.subjects import NoActiveList
from app.services.ports import ListInfo, StratumPlan, UnitOfWork
from app.services.randomization import ListInUse, WrongMethod, all_strata


class ListUploadRejected(DomainError):
    """The uploaded list has problems; nothing was loaded."""

    code = "invalid_randomization_list"

    def __init__(self, detail: str, problems: list[UploadProblem]) -> None:
        super().__init__(detail)
        self.problems = [f"line {p.line}: {p.message}" for p in problems]


class UnknownStratum(DomainError):
    """No such stratum in the study."""

    code = "invalid_stratum"


@dataclass(frozen=True, slots=True)
class StratumUse:
    key: str
    length: int
    used: int


@dataclass(frozen=True, slots=True)
class QCResult:
    study: str
    mode: str
    version: int
    method: str
    qc: ListQC
    usage: tuple[StratumUse, ...]
    regenerated: bool  # whether the seed was used to regenerate the list
    differing_strata: tuple[str, ...]


def _study(uow: UnitOfWork, slug: str) -> Study:
    stored = uow.studies.get(slug)
    if stored is None:
        raise StudyNotFound(f"no study {slug!r}")
    return stored.study


def _active(uow: UnitOfWork, slug: str) -> ListInfo:
    mode = uow.studies.mode(slug)
    info = uow.lists.active(slug, mode)
    if info is None:
        raise NoActiveList(f"study {slug!r} has no {mode} randomization list")
    return info


def list_qc(uow: UnitOfWork, slug: str) -> QCResult:
    """Counts, balance, block use, predictability, and regeneration from the seed; audited."""
    with uow:
        study = _study(uow, slug)
        info = _active(uow, slug)
        stored = uow.lists.slots(info)
        slots = {key: [slot for slot, _ in rows] for key, rows in stored.items()}
        regenerated = False
        differing: list[str] = []
        seed = uow.lists.seed(info)
        if info.method == RandomizationMethod.PERMUTED_BLOCK.value and seed is not None:
            regenerated = True
            differing = regenerate_and_compare(
                seed,
                slug,
                info.mode,  # type: ignore[arg-type]
                slots,
                study.allocation_ratio,
                study.randomization.block_sizes,
            )
        usage = tuple(
            StratumUse(s.key, s.length, s.next_sequence - 1) for s in uow.lists.strata(info)
        )
        report = (
            qc_report(slots, study.allocation_ratio)
            if info.method != "minimization"
            else (qc_report({}, study.allocation_ratio))
        )
        uow.record(
            AuditEvent(
                action="list.qc_viewed",
                entity_type="randomization_list",
                entity_id=f"{info.mode}:v{info.version}",
                study=slug,
                after={"regenerated": regenerated, "differing_strata": len(differing)},
            )
        )
        uow.commit()
    return QCResult(
        slug, info.mode, info.version, info.method, report, usage, regenerated, tuple(differing)
    )


def upload_list(uow: UnitOfWork, actor_id: str, slug: str, text: str) -> ListInfo:
    """Validate a statistician's CSV; load it whole, in one audited transaction, or not."""
    with uow:
        study = _study(uow, slug)
        if study.randomization.method is not RandomizationMethod.UPLOADED_LIST:
            raise WrongMethod(
                f"study {slug!r} uses {study.randomization.method.value}; lists are generated"
            )
        mode = uow.studies.mode(slug)
        strata = {key: (site, levels) for key, site, levels in all_strata(study)}
        result = parse_uploaded_list(
            text,
            study.arm_codes(),
            study.allocation_ratio,
            strata,
            study.randomization.block_sizes or None,
        )
        if result.problems:
            raise ListUploadRejected(
                f"the list has {len(result.problems)} problem(s); nothing was loaded",
                result.problems,
            )
        existing = uow.lists.active(slug, mode)
        if existing is not None:
            if uow.lists.allocated_count(existing.id):
                raise ListInUse(f"the {mode} list of {slug!r} has allocations")
            uow.lists.supersede(existing.id)
        plans = [
            StratumPlan(key, strata[key][0], strata[key][1], rows)
            for key, rows in sorted(result.lists.items())
        ]
        info = uow.lists.create(
            slug, mode, RandomizationMethod.UPLOADED_LIST.value, None, plans, actor_id
        )
        uow.record(
            AuditEvent(
                action="list.uploaded",
                entity_type="randomization_list",
                entity_id=f"{mode}:v{info.version}",
                study=slug,
                after={
                    "mode": mode,
                    "version": info.version,
                    "strata": len(plans),
                    "slots": sum(len(p.slots) for p in plans),
                },
            )
        )
        uow.commit(info)
    return info


@dataclass(frozen=True, slots=True)
class Extension:
    study: str
    stratum: str
    added: int
    length: int


def extend_stratum(uow: UnitOfWork, slug: str, key: str, slots: int, reason: str) -> Extension:
    """Add at least `slots` slots (whole blocks) to a stratum's list; audited with a reason."""
    if not reason.strip():
        raise DomainError("a reason is required to extend a stratum")
    with uow:
        study = _study(uow, slug)
        info = _active(uow, slug)
        if info.method != RandomizationMethod.PERMUTED_BLOCK.value:
            raise WrongMethod("only generated permuted-block lists are extended")
        strata = {k: (site, levels) for k, site, levels in all_strata(study)}
        if key not in strata:
            raise UnknownStratum(f"{key!r} is not a stratum of study {slug!r}")
        seed = uow.lists.seed(info)
        assert seed is not None
        current = {s.key: s for s in uow.lists.strata(info)}
        length = current[key].length if key in current else 0
        longer = generate_stratum_list(
            seed,
            f"{slug}|{info.mode}|{key}",
            study.allocation_ratio,
            study.randomization.block_sizes,
            length + max(slots, 1),
        )
        new_slots = longer[length:]
        used = uow.lists.used_numbers(info)
        low, high = number_range(len(used) + len(new_slots))
        extension = uow.lists.extension_count(info, key) + 1
        fresh = [
            n
            for n in randomization_numbers(
                seed,
                f"{slug}|{info.mode}|numbers|{key}|extension-{extension}",
                min(len(new_slots) + len(used), high - low + 1),
                low,
                high,
            )
            if n not in used
        ][: len(new_slots)]
        uow.lists.append_slots(
            info,
            StratumPlan(
                key, strata[key][0], strata[key][1], list(zip(new_slots, fresh, strict=True))
            ),
        )
        result = Extension(slug, key, len(new_slots), length + len(new_slots))
        uow.record(
            AuditEvent(
                action="stratum.extended",
                entity_type="stratum",
                entity_id=key,
                study=slug,
                reason=reason,
                before={"length": length},
                after={"length": result.length, "extension": extension},
            )
        )
        uow.commit(result)
    return result


def qc_as_dict(result: QCResult) -> dict[str, Any]:
    """The QC report as plain data (for the API, the CLI and the web page)."""

    def stratum(s: Any) -> dict[str, Any]:
        return {
            "stratum": s.stratum,
            "length": s.length,
            "counts": s.counts,
            "block_sizes_used": {str(k): v for k, v in s.block_sizes_used.items()},
            "unbalanced_blocks": [b.block for b in s.blocks if not b.balanced],
            "max_imbalance": s.max_imbalance,
            "predictability": s.predictability,
        }

    usage: Mapping[str, StratumUse] = {u.key: u for u in result.usage}
    return {
        "study": result.study,
        "mode": result.mode,
        "version": result.version,
        "method": result.method,
        "regenerated_from_seed": result.regenerated,
        "matches_seed": result.regenerated and not result.differing_strata,
        "differing_strata": list(result.differing_strata),
        "length": result.qc.length,
        "counts": result.qc.counts,
        "block_sizes_used": {str(k): v for k, v in result.qc.block_sizes_used.items()},
        "unbalanced_blocks": result.qc.unbalanced_blocks,
        "max_imbalance": result.qc.max_imbalance,
        "predictability": result.qc.predictability,
        "strata": [
            {**stratum(s), "used": usage[s.stratum].used if s.stratum in usage else 0}
            for s in result.qc.strata
        ],
    }
