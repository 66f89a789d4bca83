"""A subject's visit schedule on the site's local dates: missed and held visits, what is due,
and unscheduled dispensations.

Dates: a site keeps its own calendar (`Site.timezone`, an IANA zone). Day 0 is the
site-local date of the randomization instant and "today" the site-local date of now
(`local_date`); a visit's window is day0 + day - window_before .. day0 + day + window_after,
both ends included (app.domain.dispensing.visit_window). Instants stay UTC at rest.

Status of each visit on a date (`schedule`), first rule that applies:
  dispensed  kits were handed out at the visit;
  missed     recorded as missed (the subject did not come), with a reason;
  held       recorded as held (the subject came, the dose was withheld), with a reason;
  closed     the subject has ended (completed or discontinued), or the window's last day is
             before the date with nothing recorded (the site should record it missed);
  due        the window holds the date;
  upcoming   the window opens after the date.

Recording (`check_recordable`): a visit of the study is recorded missed or held once, with a
reason, never after it was dispensed, and not before its window opens (what has not happened
cannot be recorded); a closed window may still be recorded, late. Whether a later visit may
then be dispensed is app.domain.dispensing.visit_check.

Due view (`next_due`): for a subject on treatment, the next visit is the earliest visit that
is due or upcoming on the date (its window opens and closes are given); `overdue` lists the
earlier visits whose windows closed with nothing recorded. A subject with neither is not due.

Unscheduled dispensations (`Study.unscheduled`): kits outside the schedule (for example a
replacement set when a vial is broken or lost), coded U1, U2, ... per subject in order, at
most `max_per_subject` when the study sets it. Kit rule `last_visit`: the kit type the
subject's arm gets at the reference visit, the latest scheduled visit (by day) dispensed to
the subject; the quantity is the weight band's. The reference visit comes from the schedule
alone, and the supply check asks whether the site could serve that visit to a subject of
every arm (app.domain.dispensing.servable_for_every_arm), so neither the answer nor a refusal
depends on the arm. Nothing here reads an arm.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from zoneinfo import ZoneInfo

from app.domain.dispensing import (
    VisitAlreadyDispensed,
    VisitAlreadyRecorded,
    VisitNotAllowed,
    visit_window,
)
from app.domain.errors import Conflict
from app.domain.study import UNSCHEDULED_CODE, Study, Visit


class VisitKind(StrEnum):
    MISSED = "missed"
    HELD = "held"


class VisitStatus(StrEnum):
    DISPENSED = "dispensed"
    MISSED = "missed"
    HELD = "held"
    DUE = "due"
    UPCOMING = "upcoming"
    CLOSED = "closed"


class UnscheduledNotAllowed(Conflict):
    """The study allows no unscheduled dispensation, or not one more to this subject, or
    the subject has had no scheduled visit dispensed to take the kit type from."""

    code = "unscheduled_not_allowed"


@dataclass(frozen=True, slots=True)
class ScheduledVisit:
    code: str
    day: int
    opens_date: date
    closes_date: date
    status: VisitStatus


@dataclass(frozen=True, slots=True)
class DueVisit:
    """The next visit of a subject on treatment (None when none is left) and the earlier
    visits overdue: window closed, nothing recorded."""

    next: ScheduledVisit | None
    overdue: tuple[str, ...]


def local_date(at: datetime, timezone: str) -> date:
    """The date at the site (IANA zone) at the instant `at` (timezone-aware)."""
    return at.astimezone(ZoneInfo(timezone)).date()


def schedule(
    visits: Sequence[Visit],
    day0: date,
    dispensed: Collection[str],
    recorded: Mapping[str, VisitKind],
    today: date,
    *,
    ended: bool = False,
) -> tuple[ScheduledVisit, ...]:
    """Every visit of the study in day order with its window and status on `today`."""
    out: list[ScheduledVisit] = []
    for visit in sorted(visits, key=lambda v: v.day):
        opens, closes = visit_window(visit, day0)
        kind = recorded.get(visit.code)
        if visit.code in dispensed:
            status = VisitStatus.DISPENSED
        elif kind is not None:
            status = VisitStatus(kind.value)
        elif ended or closes < today:
            status = VisitStatus.CLOSED
        elif opens <= today:
            status = VisitStatus.DUE
        else:
            status = VisitStatus.UPCOMING
        out.append(ScheduledVisit(visit.code, visit.day, opens, closes, status))
    return tuple(out)


def next_due(planned: Sequence[ScheduledVisit]) -> DueVisit:
    """The due-view entry of a schedule (see the module docstring)."""
    following = next(
        (v for v in planned if v.status in (VisitStatus.DUE, VisitStatus.UPCOMING)), None
    )
    before = planned if following is None else planned[: planned.index(following)]
    overdue = tuple(v.code for v in before if v.status is VisitStatus.CLOSED)
    return DueVisit(following, overdue)


def check_recordable(
    visits: Sequence[Visit],
    day0: date,
    dispensed: Collection[str],
    recorded: Collection[str],
    visit_code: str,
    today: date,
) -> None:
    """Refuse to record `visit_code` missed or held (see the module docstring)."""
    visit = next((v for v in visits if v.code == visit_code), None)
    if visit is None:
        raise VisitNotAllowed(f"visit {visit_code!r} is not a visit of the study")
    if visit_code in dispensed:
        raise VisitAlreadyDispensed(f"visit {visit_code!r} was already dispensed")
    if visit_code in recorded:
        raise VisitAlreadyRecorded(f"visit {visit_code!r} was recorded missed or held already")
    opens, _closes = visit_window(visit, day0)
    if today < opens:
        raise VisitNotAllowed(
            f"visit {visit_code!r} opens on {opens.isoformat()}; it cannot be recorded before"
        )


_UNSCHEDULED = re.compile(UNSCHEDULED_CODE)


def unscheduled_count(dispensed: Collection[str]) -> int:
    return sum(1 for code in dispensed if _UNSCHEDULED.fullmatch(code))


def next_unscheduled(
    visits: Sequence[Visit], dispensed: Collection[str], max_per_subject: int | None
) -> tuple[str, str]:
    """The code of the subject's next unscheduled dispensation and its reference visit."""
    done = [v for v in sorted(visits, key=lambda v: v.day) if v.code in dispensed]
    if not done:
        raise UnscheduledNotAllowed(
            "no scheduled visit was dispensed yet: nothing to take the kit type from"
        )
    count = unscheduled_count(dispensed)
    if max_per_subject is not None and count >= max_per_subject:
        raise UnscheduledNotAllowed(
            f"the study allows at most {max_per_subject} unscheduled dispensation(s) a subject"
        )
    return f"U{count + 1}", done[-1].code


def site_date(study: Study, site: str, at: datetime) -> date:
    """The site-local date of `at` at one of the study's sites (UTC for an unknown site)."""
    found = study.site(site)
    return local_date(at, found.timezone if found is not None else "UTC")
