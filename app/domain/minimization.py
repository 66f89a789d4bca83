"""Pocock-Simon minimization with a biased coin, for unequal allocation ratios too.

Inputs: the allocation ratio r (arm -> positive integer weight), the minimization factors
(code, weight w > 0), the new subject's level of each factor, and the number of earlier
subjects of each arm at each level of each factor. "site" may be one of the factors. The
known levels are `levels` when given (a level without counts then has zero of every arm),
otherwise the levels present in the counts (which must then list unseen levels with zeros);
a subject's level outside them is an error, never a new level with zero counts.

1. Factors are taken once per code, in their first order: the same code given twice (say
   "site" passed as the stratum and again as a factor) counts once. Systems that count it
   twice silently double the weight of site balance. Two different weights for one code is
   an error.
2. For each candidate arm a, in ascending arm-code order, and each factor f: take the counts
   at the subject's level of f, add 1 to arm a, and divide each arm's count by r[arm], so
   that balance means "in proportion to the ratio" (3:1:1 aims at 60/20/20). The imbalance
   of f is the range (max - min) or the population variance (mean squared deviation from the
   mean) of those values. score(a) = sum over factors of w * imbalance.
3. The arms with the lowest score share probability p equally, the others share 1 - p
   equally; when every arm has the lowest score, each has 1 / number of arms.
4. draw = stream.random() (one word of the seeded stream, drawn for every decision, even a
   foregone one). The arm is the first, in ascending arm-code order, whose cumulative
   probability exceeds the draw.

Scores, ties and cumulative probabilities are computed exactly (fractions of the weights,
counts and ratio), so floating-point rounding can never break or invent a tie.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from itertools import accumulate
from typing import Literal

from app.domain.randomization import SeededStream

Measure = Literal["range", "variance"]


@dataclass(frozen=True, slots=True)
class MinimizationDecision:
    arm: str
    scores: dict[str, float]  # by candidate arm, the weighted imbalance if it were chosen
    probabilities: dict[str, float]
    draw: float
    counts_used: dict[tuple[str, str], dict[str, int]]  # (factor, level) -> arm -> count


def _imbalance(values: Sequence[Fraction], measure: Measure) -> Fraction:
    if measure == "range":
        return max(values) - min(values)
    mean = sum(values, Fraction(0)) / len(values)
    return sum(((v - mean) ** 2 for v in values), Fraction(0)) / len(values)


def _unique_factors(factors: Sequence[tuple[str, float]]) -> list[tuple[str, Fraction]]:
    weights: dict[str, float] = {}
    for code, weight in factors:
        if not (math.isfinite(weight) and weight > 0):
            raise ValueError(f"factor {code!r}: the weight must be positive, got {weight!r}")
        if weights.setdefault(code, weight) != weight:
            raise ValueError(f"factor {code!r} is given twice with different weights")
    if not weights:
        raise ValueError("minimization needs at least one factor")
    return [(code, Fraction(weight)) for code, weight in weights.items()]


def minimize(
    ratio: Mapping[str, int],
    factors: Sequence[tuple[str, float]],
    subject_levels: Mapping[str, str],
    counts: Mapping[tuple[str, str], Mapping[str, int]],
    measure: Measure,
    probability: float,
    stream: SeededStream,
    *,
    levels: Mapping[str, Collection[str]] | None = None,
) -> MinimizationDecision:
    """The arm for the next subject (`levels`: factor -> its level codes, see above)."""
    arms = sorted(ratio)
    if len(arms) < 2 or any(
        not isinstance(w, int) or isinstance(w, bool) or w < 1 for w in ratio.values()
    ):
        raise ValueError("the ratio needs at least two arms with positive integer weights")
    if measure not in ("range", "variance"):
        raise ValueError(f"unknown imbalance measure {measure!r}")
    if not 0 <= probability <= 1:
        raise ValueError(f"the probability must be between 0 and 1, got {probability!r}")

    weights = dict(_unique_factors(factors))
    used: dict[tuple[str, str], dict[str, int]] = {}
    for code in weights:
        level = subject_levels.get(code)
        if level is None:
            raise ValueError(f"the subject has no level for factor {code!r}")
        known = (code, level) in counts if levels is None else level in levels.get(code, ())
        if not known:
            raise ValueError(f"unknown level {level!r} for factor {code!r}")
        at_level = counts.get((code, level), {})
        for arm, count in at_level.items():
            if arm not in ratio:
                raise ValueError(f"counts of {code}={level} name an arm not in the ratio")
            if count < 0:
                raise ValueError(f"counts of {code}={level} cannot be negative")
        used[(code, level)] = {arm: at_level.get(arm, 0) for arm in arms}

    scores: dict[str, Fraction] = {}
    for candidate in arms:
        score = Fraction(0)
        for (code, _level), by_arm in used.items():
            values = [Fraction(by_arm[arm] + (arm == candidate), ratio[arm]) for arm in arms]
            score += weights[code] * _imbalance(values, measure)
        scores[candidate] = score

    best = min(scores.values())
    lowest = [arm for arm in arms if scores[arm] == best]
    p = Fraction(probability)
    if len(lowest) == len(arms):
        chances = dict.fromkeys(arms, Fraction(1, len(arms)))
    else:
        others = len(arms) - len(lowest)
        chances = {arm: p / len(lowest) if arm in lowest else (1 - p) / others for arm in arms}

    draw = stream.random()
    # The chances add up to exactly 1 > draw, so some arm is reached; one of zero chance never.
    cumulative = accumulate(chances[arm] for arm in arms)
    chosen = next(arm for arm, upper in zip(arms, cumulative, strict=True) if draw < upper)
    return MinimizationDecision(
        arm=chosen,
        scores={arm: float(score) for arm, score in scores.items()},
        probabilities={arm: float(chance) for arm, chance in chances.items()},
        draw=draw,
        counts_used=used,
    )
