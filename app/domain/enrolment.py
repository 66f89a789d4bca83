"""Enrolment control: caps on randomized subjects, and whether a site enrols.

What a cap counts: the subjects ever randomized in the study's current mode (live, or uat
for test subjects), including those who later completed or discontinued; a subject never
randomized (registered, screen failed) never counts. A subject's stratum is the levels used
at its randomization (a later correction changes no count).

Where a cap applies (its scope and target):
- `study`, target "": every randomization of the study;
- `country`, target a country code ("FR"): randomizations at the sites of that country;
- `site`, target a site code ("FR01");
- `stratum`, target every factor's level in the study's factor order, `shock=yes|age=ge65`
  (that stratum at every site), or the same after a site code, `FR01|shock=yes|age=ge65`
  (that site's stratum: the randomization list's stratum key when the study stratifies by
  site). Levels may be given in any order; the target is stored in the canonical one.

Rules, with `n` the subjects a cap counts before a randomization:
- a hard cap refuses the randomization when `n >= cap` (409 `enrolment_cap_reached`,
  nothing changed);
- the randomization that brings the count to `warning_at` (`n + 1 == warning_at`) crosses
  the warning threshold: one audit event and one notification. Counts only grow, and the
  randomizations a cap governs are serialized (its row is locked while they run), so exactly
  one randomization crosses a threshold; a threshold set below the count never fires.
A site closed to enrolment refuses every randomization (409 `site_enrolment_closed`) and
keeps dispensing and its resupply; that is apart from the site's activation. No rule here
looks at an arm.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from app.domain.errors import Conflict, DomainError, NotFound
from app.domain.study import Study


class CapScope(StrEnum):
    STUDY = "study"
    COUNTRY = "country"
    SITE = "site"
    STRATUM = "stratum"


class EnrolmentCapReached(Conflict):
    """A hard enrolment cap that governs this randomization is reached."""

    code = "enrolment_cap_reached"


class SiteEnrolmentClosed(Conflict):
    """The site is closed to enrolment: no randomization there until it is reopened."""

    code = "site_enrolment_closed"


class SiteEnrolmentAlreadyClosed(Conflict):
    """The site is closed to enrolment already."""

    code = "site_enrolment_already_closed"


class SiteEnrolmentAlreadyOpen(Conflict):
    """The site is open to enrolment already."""

    code = "site_enrolment_already_open"


class SiteAlreadyActive(Conflict):
    """The site is active already."""

    code = "site_already_active"


class InvalidEnrolmentCap(DomainError):
    """The cap's scope, target or numbers are not valid for the study."""

    code = "invalid_enrolment_cap"


class EnrolmentCapNotFound(NotFound):
    """No cap for that scope and target in the study."""

    code = "enrolment_cap_not_found"


class ReasonRequired(DomainError):
    """The action needs a reason, and none was given."""

    code = "reason_required"


@dataclass(frozen=True, slots=True)
class EnrolmentCap:
    """A warning threshold and a hard cap (either may be None) for one scope and target."""

    scope: CapScope
    target: str
    warning_at: int | None
    cap: int | None
    set_at: datetime | None = None
    set_by: str | None = None
    id: int = 0


@dataclass(frozen=True, slots=True)
class Enrollee:
    """A randomized subject as the caps count it: where, and the levels it was randomized in."""

    site: str
    country: str
    strata: Mapping[str, str]


class Verdict(StrEnum):
    REFUSE = "refuse"
    WARN = "warn"


def require_reason(reason: str | None) -> str:
    text = (reason or "").strip()
    if not text:
        raise ReasonRequired("a reason is required")
    return text


def _stratum_target(study: Study, target: str) -> str:
    parts = [p.strip() for p in target.split("|") if p.strip()]
    site = None
    if parts and "=" not in parts[0]:
        site = parts.pop(0)
        if study.site(site) is None:
            raise InvalidEnrolmentCap(f"{site!r} is not a site of study {study.slug!r}")
    levels: dict[str, str] = {}
    for part in parts:
        factor, _, level = part.partition("=")
        found = study.factor(factor)
        if found is None or factor in levels:
            raise InvalidEnrolmentCap(f"unknown or repeated factor {factor!r} in {target!r}")
        if level not in found.level_codes():
            raise InvalidEnrolmentCap(f"unknown level {level!r} of factor {factor!r}")
        levels[factor] = level
    order = [f.code for f in study.factors]
    if not order or sorted(levels) != sorted(order):
        raise InvalidEnrolmentCap(
            f"a stratum names a level of every factor ({', '.join(order) or 'none'}): {target!r}"
        )
    canonical = "|".join(f"{f}={levels[f]}" for f in order)
    return f"{site}|{canonical}" if site else canonical


def canonical_target(study: Study, scope: CapScope, target: str) -> str:
    """The target as stored, or `InvalidEnrolmentCap` when the study has no such place."""
    target = target.strip()
    if scope is CapScope.STUDY:
        if target:
            raise InvalidEnrolmentCap("a study cap has no target")
        return ""
    if scope is CapScope.COUNTRY:
        if target.upper() not in {s.country for s in study.sites}:
            raise InvalidEnrolmentCap(f"no site of study {study.slug!r} is in {target!r}")
        return target.upper()
    if scope is CapScope.SITE:
        if study.site(target) is None:
            raise InvalidEnrolmentCap(f"{target!r} is not a site of study {study.slug!r}")
        return target
    return _stratum_target(study, target)


def check_limits(warning_at: int | None, cap: int | None) -> None:
    """A threshold and a cap are whole numbers from 1; the threshold is not above the cap."""
    if warning_at is None and cap is None:
        raise InvalidEnrolmentCap("give a warning threshold, a cap, or both")
    for name, value in (("warning threshold", warning_at), ("cap", cap)):
        if value is not None and not 1 <= value <= 1_000_000:
            raise InvalidEnrolmentCap(f"the {name} is a whole number from 1 to 1000000")
    if warning_at is not None and cap is not None and warning_at > cap:
        raise InvalidEnrolmentCap("the warning threshold is above the cap")


def stratum_levels(target: str) -> tuple[str | None, dict[str, str]]:
    """A canonical stratum target's site (None: every site) and levels."""
    parts = target.split("|")
    site = None if "=" in parts[0] else parts.pop(0)
    return site, dict(p.split("=", 1) for p in parts)


def governs(cap: EnrolmentCap, enrollee: Enrollee) -> bool:
    """Whether the cap counts this (about to be) randomized subject."""
    if cap.scope is CapScope.STUDY:
        return True
    if cap.scope is CapScope.COUNTRY:
        return enrollee.country == cap.target
    if cap.scope is CapScope.SITE:
        return enrollee.site == cap.target
    site, levels = stratum_levels(cap.target)
    if site is not None and site != enrollee.site:
        return False
    return all(enrollee.strata.get(factor) == level for factor, level in levels.items())


def verdict(cap: EnrolmentCap, counted: int) -> Verdict | None:
    """What one more randomization under the cap does, `counted` randomized already."""
    if cap.cap is not None and counted >= cap.cap:
        return Verdict.REFUSE
    if cap.warning_at is not None and counted + 1 == cap.warning_at:
        return Verdict.WARN
    return None


def count(cap: EnrolmentCap, enrollees: Iterable[Enrollee]) -> int:
    return sum(1 for e in enrollees if governs(cap, e))


def state(cap: EnrolmentCap, counted: int) -> str:
    """`reached` (no more randomizations), `warning` (at or past the threshold) or `open`."""
    if cap.cap is not None and counted >= cap.cap:
        return "reached"
    if cap.warning_at is not None and counted >= cap.warning_at:
        return "warning"
    return "open"


@dataclass(frozen=True, slots=True)
class EnrolmentCounts:
    """Randomized subjects by study, country, site and study-wide stratum (never by arm)."""

    total: int
    by_country: Mapping[str, int]
    by_site: Mapping[str, int]
    by_stratum: Mapping[str, int]


def tally(enrollees: Sequence[Enrollee], factor_order: Sequence[str]) -> EnrolmentCounts:
    def stratum(e: Enrollee) -> str:
        return "|".join(f"{f}={e.strata.get(f, '')}" for f in factor_order)

    return EnrolmentCounts(
        total=len(enrollees),
        by_country=dict(sorted(Counter(e.country for e in enrollees).items())),
        by_site=dict(sorted(Counter(e.site for e in enrollees).items())),
        by_stratum=dict(sorted(Counter(stratum(e) for e in enrollees).items()))
        if factor_order
        else {},
    )
