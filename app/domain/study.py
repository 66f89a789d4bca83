"""The study definition: what a trial randomizes, dispenses and supplies.

A `Study` is an immutable value built from a study file. `study_problems` lists every way a
definition contradicts itself (an arm without a ratio, a visit without a kit type, weight
bands that overlap...), each with the path of the offending field, so a file is rejected with
all of its problems at once.

Allocation is decided by the arms, the allocation ratio, the stratification factors and
their levels, and the randomization method with its parameters. `allocation_changes` names
the differences between two definitions in exactly those, so a study that has randomized
anyone keeps them fixed (a label, a visit window or a supply level may still change).

Every secret of a study is sealed at a size that depends only on non-secret facts (see
app.adapters.crypto.envelope), so `study_problems` also bounds what is sealed per record
(`sealing_problems`): arm and kit type codes, and the factor and level codes a minimization
trace holds, have at most `MAX_CODE_BYTES` bytes; block sizes are at most `MAX_BLOCK_SIZE`;
a minimization study has at most `MAX_MINIMIZATION_ARMS` arms and
`MAX_MINIMIZATION_FACTORS` minimization factors, so the largest possible decision trace fits
its fixed sealed size.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from fractions import Fraction
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from app.domain.roles import UNBLINDING_CAPABLE, Role

MAX_CODE_BYTES = 32
MAX_BLOCK_SIZE = 9999
MAX_MINIMIZATION_ARMS = 12
MAX_MINIMIZATION_FACTORS = 8


class RandomizationMethod(StrEnum):
    PERMUTED_BLOCK = "permuted_block"
    UPLOADED_LIST = "uploaded_list"
    MINIMIZATION = "minimization"


class ImbalanceMeasure(StrEnum):
    RANGE = "range"
    VARIANCE = "variance"


@dataclass(frozen=True, slots=True)
class Arm:
    code: str
    label: str


@dataclass(frozen=True, slots=True)
class Level:
    code: str
    label: str


@dataclass(frozen=True, slots=True)
class StratificationFactor:
    code: str
    label: str
    levels: tuple[Level, ...]

    def level_codes(self) -> tuple[str, ...]:
        return tuple(level.code for level in self.levels)


@dataclass(frozen=True, slots=True)
class Depot:
    code: str
    name: str
    country: str


@dataclass(frozen=True, slots=True)
class Site:
    code: str
    name: str
    country: str
    depot: str
    active: bool
    timezone: str = "UTC"


@dataclass(frozen=True, slots=True)
class Visit:
    """A dosing visit, `day` days after randomization (day 0), allowed within the window."""

    code: str
    day: int
    window_before: int = 0
    window_after: int = 0


@dataclass(frozen=True, slots=True)
class KitType:
    code: str
    description: str


@dataclass(frozen=True, slots=True)
class WeightBand:
    """Subjects weighing from `min_kg` (inclusive) to `max_kg` (exclusive) get `quantity` kits."""

    min_kg: Decimal
    max_kg: Decimal
    quantity: int

    def contains(self, weight_kg: Decimal) -> bool:
        return self.min_kg <= weight_kg < self.max_kg


@dataclass(frozen=True, slots=True)
class Dispensing:
    """Double-dummy dispensing: (arm, visit) -> kit type; weight band -> kits per visit."""

    kit_type_by_arm_visit: Mapping[tuple[str, str], str]
    weight_bands: tuple[WeightBand, ...]

    def quantity_for(self, weight_kg: Decimal) -> int | None:
        for band in self.weight_bands:
            if band.contains(weight_kg):
                return band.quantity
        return None


@dataclass(frozen=True, slots=True)
class MinimizationFactor:
    factor: str  # a stratification factor code, or "site"
    weight: float


@dataclass(frozen=True, slots=True)
class Minimization:
    factors: tuple[MinimizationFactor, ...]
    imbalance: ImbalanceMeasure = ImbalanceMeasure.RANGE
    probability: float = 0.8  # of taking the arm that minimizes imbalance


@dataclass(frozen=True, slots=True)
class Randomization:
    method: RandomizationMethod
    block_sizes: tuple[int, ...] = ()
    stratify_by_site: bool = True
    cap_per_stratum: int = 100
    low_warning: int = 4  # warn when a stratum has fewer free slots than this
    minimization: Minimization | None = None


@dataclass(frozen=True, slots=True)
class SupplyLevels:
    """Per site and kit type: shipped on activation, the trigger, and the level restored."""

    initial: int
    trigger: int
    resupply: int


@dataclass(frozen=True, slots=True)
class Supply:
    levels: Mapping[str, SupplyLevels]  # by kit type
    do_not_dispense_days: int
    kits_per_lot: int = 200  # kits of each type in one lot (a lot holds every type)
    lot_shelf_life_days: int = 365
    resupply_rounds: int = 3  # kits made per site beyond the initial ones, in resupply levels
    # The largest share of a site's use the resupply review assumes one type takes (None:
    # the design's, app.domain.resupply.top_share).
    type_share: Fraction | None = None


@dataclass(frozen=True, slots=True)
class UnblindingPolicy:
    roles: frozenset[Role]
    fresh_token_seconds: int = 300


# The reasons a subject's treatment may be discontinued, when the study file names none;
# "other" asks for a text (app.domain.subjects).
DEFAULT_DISCONTINUATION_REASONS: tuple[str, ...] = (
    "adverse_event",
    "death",
    "consent_withdrawn",
    "investigator_decision",
    "lost_to_follow_up",
    "other",
)
# Why a registered subject failed screening, when the study file names none.
DEFAULT_SCREEN_FAILURE_REASONS: tuple[str, ...] = (
    "inclusion_criterion_not_met",
    "exclusion_criterion_met",
    "consent_not_obtained",
    "death",
    "investigator_decision",
    "other",
)


@dataclass(frozen=True, slots=True)
class EligibilityQuestion:
    """A question the randomizing user answers "yes" to before a randomization goes ahead;
    `text` in English, `translations` by locale (e.g. "fr")."""

    code: str
    text: str
    translations: Mapping[str, str] = field(default_factory=dict)

    def text_in(self, locale: str) -> str:
        return self.translations.get(locale) or self.text


# Unscheduled dispensations are coded U1, U2, ... (app.domain.schedule); no visit may be.
UNSCHEDULED_CODE = r"U[0-9]+"
UNSCHEDULED_KIT_RULES = ("last_visit",)


@dataclass(frozen=True, slots=True)
class Unscheduled:
    """Dispensing outside the schedule (app.domain.schedule): `kit_rule` "last_visit" gives
    the kit type of arm x the latest scheduled visit dispensed, in the weight band's
    quantity; at most `max_per_subject` a subject (None: no limit)."""

    kit_rule: str = "last_visit"
    max_per_subject: int | None = None


@dataclass(frozen=True, slots=True)
class Study:
    slug: str
    title: str
    protocol: str
    arms: tuple[Arm, ...]
    allocation_ratio: Mapping[str, int]
    factors: tuple[StratificationFactor, ...]
    depots: tuple[Depot, ...]
    sites: tuple[Site, ...]
    visits: tuple[Visit, ...]
    kit_types: tuple[KitType, ...]
    dispensing: Dispensing
    randomization: Randomization
    supply: Supply
    unblinding: UnblindingPolicy
    pooled_with: tuple[str, ...] = ()
    description: str = ""
    extra: Mapping[str, str] = field(default_factory=dict)
    discontinuation_reasons: tuple[str, ...] = DEFAULT_DISCONTINUATION_REASONS
    unscheduled: Unscheduled | None = None  # None: no unscheduled dispensation
    screen_failure_reasons: tuple[str, ...] = DEFAULT_SCREEN_FAILURE_REASONS
    # A screen-failed subject may be registered again, linked to the earlier registration,
    # at most `max_rescreens` times in one chain (app.domain.subjects).
    rescreening: bool = False
    max_rescreens: int = 1
    eligibility: tuple[EligibilityQuestion, ...] = ()

    def arm_codes(self) -> tuple[str, ...]:
        return tuple(arm.code for arm in self.arms)

    def longest_arm_bytes(self) -> int:
        """The longest arm code in UTF-8 bytes (with a stratum's slot count, it sets the
        stratum's sealed size)."""
        return max((len(code.encode()) for code in self.arm_codes()), default=0)

    def site(self, code: str) -> Site | None:
        return next((s for s in self.sites if s.code == code), None)

    def factor(self, code: str) -> StratificationFactor | None:
        return next((f for f in self.factors if f.code == code), None)

    def ratio_sum(self) -> int:
        return sum(self.allocation_ratio.values())


@dataclass(frozen=True, slots=True)
class Problem:
    """One contradiction in a definition: where (a dotted path) and why."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


def _duplicates(codes: list[str]) -> set[str]:
    seen: set[str] = set()
    return {c for c in codes if c in seen or seen.add(c)}  # type: ignore[func-returns-value]


def study_problems(study: Study) -> list[Problem]:
    """Every cross-field contradiction of the definition, in file order."""
    problems: list[Problem] = []

    def check_unique(path: str, codes: list[str]) -> None:
        for dup in sorted(_duplicates(codes)):
            problems.append(Problem(path, f"code {dup!r} appears more than once"))

    arms = list(study.arm_codes())
    check_unique("arms", arms)
    if len(arms) < 2:
        problems.append(Problem("arms", "a randomized study needs at least two arms"))
    ratio_arms = set(study.allocation_ratio)
    for missing in sorted(set(arms) - ratio_arms):
        problems.append(Problem("allocation_ratio", f"arm {missing!r} has no ratio"))
    for unknown in sorted(ratio_arms - set(arms)):
        problems.append(Problem(f"allocation_ratio.{unknown}", "not an arm of the study"))
    for arm, weight in study.allocation_ratio.items():
        if weight < 1:
            problems.append(Problem(f"allocation_ratio.{arm}", "must be a positive integer"))

    check_unique("stratification_factors", [f.code for f in study.factors])
    for i, factor in enumerate(study.factors):
        check_unique(f"stratification_factors[{i}].levels", list(factor.level_codes()))
        if len(factor.levels) < 2:
            problems.append(
                Problem(f"stratification_factors[{i}].levels", "a factor needs two levels")
            )
        if factor.code == "site":
            problems.append(
                Problem(
                    f"stratification_factors[{i}].code",
                    "'site' is reserved: stratify by site with randomization.stratify_by_site",
                )
            )

    depots = [d.code for d in study.depots]
    check_unique("depots", depots)
    check_unique("sites", [s.code for s in study.sites])
    for i, site in enumerate(study.sites):
        if site.depot not in depots:
            problems.append(Problem(f"sites[{i}].depot", f"unknown depot {site.depot!r}"))
    if not study.sites:
        problems.append(Problem("sites", "a study needs at least one site"))

    visits = [v.code for v in study.visits]
    check_unique("visits", visits)
    if not visits:
        problems.append(Problem("visits", "a study needs at least one dosing visit"))
    days = [v.day for v in study.visits]
    if days != sorted(days) or len(set(days)) != len(days):
        problems.append(Problem("visits", "visits must be listed in strictly increasing day"))
    for i, visit in enumerate(study.visits):
        if visit.window_before < 0 or visit.window_after < 0:
            problems.append(Problem(f"visits[{i}].window", "window days cannot be negative"))

    kit_types = [k.code for k in study.kit_types]
    check_unique("kit_types", kit_types)
    used_kit_types: set[str] = set()
    table = study.dispensing.kit_type_by_arm_visit
    for arm in arms:
        for visit_code in visits:
            kit_type = table.get((arm, visit_code))
            path = f"dispensing.kit_types.{arm}.{visit_code}"
            if kit_type is None:
                problems.append(Problem(path, "no kit type for this arm at this visit"))
            elif kit_type not in kit_types:
                problems.append(Problem(path, f"unknown kit type {kit_type!r}"))
            else:
                used_kit_types.add(kit_type)
    for arm, visit_code in table:
        if arm not in arms:
            problems.append(Problem(f"dispensing.kit_types.{arm}", "not an arm of the study"))
        elif visit_code not in visits:
            problems.append(
                Problem(f"dispensing.kit_types.{arm}.{visit_code}", "not a visit of the study")
            )
    for unused in sorted(set(kit_types) - used_kit_types):
        problems.append(Problem("kit_types", f"kit type {unused!r} is never dispensed"))

    bands = sorted(study.dispensing.weight_bands, key=lambda b: b.min_kg)
    if not bands:
        problems.append(Problem("dispensing.weight_bands", "at least one weight band"))
    for i, band in enumerate(study.dispensing.weight_bands):
        if band.min_kg >= band.max_kg:
            problems.append(Problem(f"dispensing.weight_bands[{i}]", "min_kg must be below max_kg"))
        if band.quantity < 1:
            problems.append(Problem(f"dispensing.weight_bands[{i}].quantity", "at least one kit"))
    covered_to = bands[0].max_kg if bands else Decimal(0)
    for band in bands[1:]:
        if band.min_kg < covered_to:
            problems.append(
                Problem("dispensing.weight_bands", f"bands overlap at {band.min_kg} kg")
            )
        elif band.min_kg > covered_to:
            problems.append(
                Problem("dispensing.weight_bands", f"gap between {covered_to} and {band.min_kg} kg")
            )
        covered_to = max(covered_to, band.max_kg)

    rnd = study.randomization
    ratio_sum = study.ratio_sum()
    if rnd.method is RandomizationMethod.PERMUTED_BLOCK:
        if not rnd.block_sizes:
            problems.append(Problem("randomization.block_sizes", "needed for permuted blocks"))
        for size in rnd.block_sizes:
            if ratio_sum and (size < 1 or size % ratio_sum):
                problems.append(
                    Problem(
                        "randomization.block_sizes",
                        f"{size} is not a multiple of the ratio sum {ratio_sum}",
                    )
                )
    if rnd.method is RandomizationMethod.MINIMIZATION:
        if rnd.minimization is None:
            problems.append(Problem("randomization.minimization", "needed for minimization"))
        else:
            factor_codes = {f.code for f in study.factors} | {"site"}
            for i, mf in enumerate(rnd.minimization.factors):
                if mf.factor not in factor_codes:
                    problems.append(
                        Problem(
                            f"randomization.minimization.factors[{i}].factor",
                            f"unknown factor {mf.factor!r}",
                        )
                    )
                if mf.weight <= 0:
                    problems.append(
                        Problem(f"randomization.minimization.factors[{i}].weight", "positive")
                    )
            if not 0.5 <= rnd.minimization.probability <= 1:
                problems.append(
                    Problem("randomization.minimization.probability", "must be between 0.5 and 1")
                )
    if rnd.cap_per_stratum < 1:
        problems.append(Problem("randomization.cap_per_stratum", "must be positive"))

    for kit_type in kit_types:
        if kit_type not in study.supply.levels:
            problems.append(Problem("supply.levels", f"no levels for kit type {kit_type!r}"))
    for kit_type, levels in study.supply.levels.items():
        path = f"supply.levels.{kit_type}"
        if kit_type not in kit_types:
            problems.append(Problem(path, "not a kit type of the study"))
        if not 0 <= levels.trigger < levels.resupply:
            problems.append(Problem(path, "trigger must be below the resupply level"))
        if levels.initial < levels.trigger:
            problems.append(Problem(path, "the initial shipment must reach the trigger level"))
    if study.supply.do_not_dispense_days < 0:
        problems.append(Problem("supply.do_not_dispense_days", "cannot be negative"))

    for role in sorted(study.unblinding.roles - UNBLINDING_CAPABLE):
        problems.append(Problem("unblinding.roles", f"role {role.value!r} may never unblind"))
    if study.slug in study.pooled_with:
        problems.append(Problem("pooled_with", "a study is not pooled with itself"))
    return problems + _subject_problems(study) + _visit_problems(study) + sealing_problems(study)


def _visit_problems(study: Study) -> list[Problem]:
    """Site time zones (visit windows are site-local dates) and the unscheduled rule."""
    problems: list[Problem] = []
    for i, site in enumerate(study.sites):
        try:
            ZoneInfo(site.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            problems.append(Problem(f"sites[{i}].timezone", f"unknown time zone {site.timezone!r}"))
    rule = study.unscheduled
    if rule is None:
        return problems
    if rule.kit_rule not in UNSCHEDULED_KIT_RULES:
        problems.append(
            Problem("unscheduled.kit_rule", f"must be one of {', '.join(UNSCHEDULED_KIT_RULES)}")
        )
    if rule.max_per_subject is not None and rule.max_per_subject < 1:
        problems.append(Problem("unscheduled.max_per_subject", "must be at least 1"))
    for i, visit in enumerate(study.visits):
        if re.fullmatch(UNSCHEDULED_CODE, visit.code):
            problems.append(
                Problem(f"visits[{i}].code", "U and a number name unscheduled dispensations")
            )
    return problems


def _subject_problems(study: Study) -> list[Problem]:
    problems: list[Problem] = []
    for name, reasons in (
        ("discontinuation_reasons", list(study.discontinuation_reasons)),
        ("screen_failure_reasons", list(study.screen_failure_reasons)),
    ):
        path = f"subjects.{name}"
        problems.extend(
            Problem(path, f"code {dup!r} appears more than once")
            for dup in sorted(_duplicates(reasons))
        )
        if not reasons:
            problems.append(Problem(path, "name at least one reason"))
    problems.extend(
        Problem("eligibility", f"code {dup!r} appears more than once")
        for dup in sorted(_duplicates([q.code for q in study.eligibility]))
    )
    if study.max_rescreens < 1:
        problems.append(Problem("subjects.max_rescreens", "must be at least 1"))
    return problems


def sealing_problems(study: Study) -> list[Problem]:
    """What would not fit its sealed size (see the module doc): a sealed value longer than
    its kind's size is refused, so the definition is refused first, naming the field."""
    problems: list[Problem] = []

    def one_size(what: str) -> str:
        return f"so that every sealed {what} has one size"

    def check_code(path: str, code: str, what: str) -> None:
        if len(code.encode()) > MAX_CODE_BYTES:
            problems.append(Problem(path, f"longer than {MAX_CODE_BYTES} bytes, {one_size(what)}"))

    for i, arm in enumerate(study.arms):
        check_code(f"arms[{i}].code", arm.code, "arm")
    for i, kit_type in enumerate(study.kit_types):
        check_code(f"kit_types[{i}].code", kit_type.code, "kit type")
    for size in study.randomization.block_sizes:
        if size > MAX_BLOCK_SIZE:
            problems.append(
                Problem(
                    "randomization.block_sizes",
                    f"{size} is above {MAX_BLOCK_SIZE}, {one_size('slot list')}",
                )
            )
    minimization = study.randomization.minimization
    if study.randomization.method is RandomizationMethod.MINIMIZATION and minimization:
        for i, factor in enumerate(study.factors):
            check_code(f"stratification_factors[{i}].code", factor.code, "decision trace")
            for j, level in enumerate(factor.levels):
                path = f"stratification_factors[{i}].levels[{j}].code"
                check_code(path, level.code, "decision trace")
        if len(study.arms) > MAX_MINIMIZATION_ARMS:
            problems.append(
                Problem(
                    "arms",
                    f"minimization allows at most {MAX_MINIMIZATION_ARMS} arms, "
                    + one_size("decision trace"),
                )
            )
        if len(minimization.factors) > MAX_MINIMIZATION_FACTORS:
            problems.append(
                Problem(
                    "randomization.minimization.factors",
                    f"at most {MAX_MINIMIZATION_FACTORS} factors, " + one_size("decision trace"),
                )
            )
    return problems


def allocation_changes(old: Study, new: Study) -> list[str]:
    """What in `new` would change allocation against `old` (empty when nothing would)."""
    changes: list[str] = []
    if old.arm_codes() != new.arm_codes():
        changes.append(f"arms {list(old.arm_codes())} -> {list(new.arm_codes())}")
    if dict(old.allocation_ratio) != dict(new.allocation_ratio):
        changes.append("allocation ratio")
    old_factors = [(f.code, f.level_codes()) for f in old.factors]
    new_factors = [(f.code, f.level_codes()) for f in new.factors]
    if old_factors != new_factors:
        changes.append("stratification factors or their levels")
    if old.randomization.method != new.randomization.method:
        changes.append(
            f"randomization method {old.randomization.method.value} -> "
            f"{new.randomization.method.value}"
        )
    if (
        old.randomization.block_sizes != new.randomization.block_sizes
        or old.randomization.stratify_by_site != new.randomization.stratify_by_site
        or old.randomization.minimization != new.randomization.minimization
    ):
        changes.append("randomization parameters (block sizes, site stratification, minimization)")
    return changes
