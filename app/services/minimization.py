"""Pocock-Simon allocation inside a randomization (see app.domain.minimization).

Minimization allocations of a study are serialized on the list's single cursor row '*', so
the counts each decision sees include every earlier allocation. The random element of the
n-th allocation comes from the list's seed under the label "{study}|{mode}|minimization|{n}",
and the whole decision (counts, scores, probabilities, draw) is kept, sealed, with it.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import TYPE_CHECKING

from app.domain.minimization import minimize
from app.domain.randomization import SeededStream
from app.domain.study import Study
from app.domain.subjects import StratumExhausted, Subject
from app.services.ports import ListInfo, UnitOfWork

if TYPE_CHECKING:
    from app.services.randomization import Taken


def _levels(subject: Subject) -> dict[str, str]:
    return {**subject.strata, "site": subject.site}


def take_minimized(uow: UnitOfWork, study: Study, info: ListInfo, subject: Subject) -> Taken:
    settings = study.randomization.minimization
    assert settings is not None
    cursor = uow.lists.lock_stratum(info.id, "*")
    if cursor is None or cursor.next_sequence > cursor.length:
        raise StratumExhausted(f"study {study.slug!r} has used every randomization number")
    sequence = cursor.next_sequence
    _slot, number = uow.lists.slot(info, cursor, sequence)
    factors = [(f.factor, f.weight) for f in settings.factors]
    counts: defaultdict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for other, arm, _number in uow.lists.allocations(study.slug, info.mode):
        levels = _levels(other)
        for factor, _weight in factors:
            counts[(factor, levels[factor])][arm] += 1
    from app.services.randomization import Taken

    seed = uow.lists.seed(info)
    assert seed is not None
    stream = SeededStream(seed, f"{study.slug}|{info.mode}|minimization|{sequence}")
    subject_levels = _levels(subject)
    decision = minimize(
        study.allocation_ratio,
        factors,
        {f: subject_levels[f] for f, _ in factors},
        counts,
        settings.imbalance.value,
        settings.probability,
        stream,
        levels={f.code: f.level_codes() for f in study.factors}
        | {"site": tuple(s.code for s in study.sites)},
    )
    uow.lists.advance(
        cursor, sequence + 1, cursor.length - sequence <= study.randomization.low_warning
    )
    trace = {
        "sequence": sequence,
        "factors": factors,
        "levels": {f: subject_levels[f] for f, _ in factors},
        "counts": {f"{f}={lv}": dict(c) for (f, lv), c in decision.counts_used.items()},
        "scores": decision.scores,
        "probabilities": decision.probabilities,
        "draw": decision.draw,
        "arm": decision.arm,
    }
    return Taken(cursor, sequence, decision.arm, number, trace)
