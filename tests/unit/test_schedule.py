"""The visit schedule on site-local dates: statuses, what is due, recording missed or held
visits, unscheduled dispensations, and the study file's unscheduled rule."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest

from app.domain.dispensing import VisitAlreadyDispensed, VisitAlreadyRecorded, VisitNotAllowed
from app.domain.schedule import (
    UnscheduledNotAllowed,
    VisitKind,
    VisitStatus,
    check_recordable,
    local_date,
    next_due,
    next_unscheduled,
    schedule,
    site_date,
)
from app.domain.study import Unscheduled, Visit, study_problems
from tests.builders import make_study, set_path, study_document

VISITS = (
    Visit("D1", 0),
    Visit("D4", 3, window_before=1, window_after=1),
    Visit("D8", 7, window_before=1, window_after=1),
)
DAY0 = date(2026, 3, 11)


def on_day(day: int) -> date:
    return DAY0 + timedelta(days=day)


def statuses(today: date, dispensed: set[str], recorded: dict[str, VisitKind]) -> list[str]:
    return [v.status.value for v in schedule(VISITS, DAY0, dispensed, recorded, today)]


class TestLocalDates:
    def test_late_evening_utc_is_the_next_day_in_paris(self) -> None:
        at = datetime(2026, 3, 10, 23, 30, tzinfo=UTC)
        assert local_date(at, "Europe/Paris") == date(2026, 3, 11)
        assert local_date(at, "UTC") == date(2026, 3, 10)

    def test_early_morning_utc_is_the_day_before_in_new_york(self) -> None:
        at = datetime(2026, 3, 11, 2, 0, tzinfo=UTC)
        assert local_date(at, "America/New_York") == date(2026, 3, 10)

    def test_site_date_takes_the_sites_zone(self) -> None:
        study = make_study()  # iris-7a: FR01 in Europe/Paris
        at = datetime(2026, 3, 10, 23, 30, tzinfo=UTC)
        assert site_date(study, "FR01", at) == date(2026, 3, 11)
        assert site_date(study, "XX99", at) == date(2026, 3, 10)


class TestSchedule:
    def test_windows_are_local_dates_from_day_0(self) -> None:
        planned = schedule(VISITS, DAY0, {"D1"}, {}, on_day(0))
        assert [(v.code, v.opens_date, v.closes_date) for v in planned] == [
            ("D1", on_day(0), on_day(0)),
            ("D4", on_day(2), on_day(4)),
            ("D8", on_day(6), on_day(8)),
        ]

    def test_statuses_through_the_days(self) -> None:
        assert statuses(on_day(0), {"D1"}, {}) == ["dispensed", "upcoming", "upcoming"]
        assert statuses(on_day(2), {"D1"}, {}) == ["dispensed", "due", "upcoming"]
        assert statuses(on_day(5), {"D1"}, {}) == ["dispensed", "closed", "upcoming"]
        assert statuses(on_day(6), {"D1"}, {"D4": VisitKind.HELD}) == [
            "dispensed",
            "held",
            "due",
        ]
        assert statuses(on_day(3), set(), {"D1": VisitKind.MISSED}) == ["missed", "due", "upcoming"]

    def test_an_ended_subject_has_nothing_due(self) -> None:
        planned = schedule(VISITS, DAY0, {"D1"}, {}, on_day(3), ended=True)
        assert [v.status for v in planned] == [
            VisitStatus.DISPENSED,
            VisitStatus.CLOSED,
            VisitStatus.CLOSED,
        ]


class TestNextDue:
    def test_the_next_visit_and_the_overdue_ones(self) -> None:
        due = next_due(schedule(VISITS, DAY0, {"D1"}, {}, on_day(6)))
        assert due.next is not None
        assert (due.next.code, due.next.status, due.overdue) == ("D8", VisitStatus.DUE, ("D4",))

    def test_upcoming_when_nothing_is_open(self) -> None:
        due = next_due(schedule(VISITS, DAY0, {"D1"}, {}, on_day(1)))
        assert due.next is not None
        assert (due.next.code, due.next.status, due.overdue) == ("D4", VisitStatus.UPCOMING, ())

    def test_recorded_visits_are_not_overdue(self) -> None:
        due = next_due(schedule(VISITS, DAY0, {"D1"}, {"D4": VisitKind.MISSED}, on_day(6)))
        assert due.overdue == ()

    def test_after_the_last_window_only_the_overdue_remain(self) -> None:
        due = next_due(schedule(VISITS, DAY0, {"D1", "D4"}, {}, on_day(20)))
        assert (due.next, due.overdue) == (None, ("D8",))
        done = next_due(schedule(VISITS, DAY0, {"D1", "D4", "D8"}, {}, on_day(20)))
        assert (done.next, done.overdue) == (None, ())


class TestCheckRecordable:
    @pytest.mark.parametrize("day", [2, 3, 4, 9])
    def test_from_the_window_opening_on(self, day: int) -> None:
        check_recordable(VISITS, DAY0, {"D1"}, set(), "D4", on_day(day))

    def test_not_before_the_window_opens(self) -> None:
        with pytest.raises(VisitNotAllowed, match="opens on 2026-03-13"):
            check_recordable(VISITS, DAY0, {"D1"}, set(), "D4", on_day(1))

    def test_never_after_it_was_dispensed(self) -> None:
        with pytest.raises(VisitAlreadyDispensed):
            check_recordable(VISITS, DAY0, {"D1", "D4"}, set(), "D4", on_day(3))

    def test_once(self) -> None:
        with pytest.raises(VisitAlreadyRecorded):
            check_recordable(VISITS, DAY0, {"D1"}, {"D4"}, "D4", on_day(3))

    def test_unknown_visit(self) -> None:
        with pytest.raises(VisitNotAllowed, match="not a visit"):
            check_recordable(VISITS, DAY0, {"D1"}, set(), "U1", on_day(3))


class TestNextUnscheduled:
    def test_numbered_in_turn_from_the_latest_scheduled_visit_dispensed(self) -> None:
        assert next_unscheduled(VISITS, {"D1"}, None) == ("U1", "D1")
        assert next_unscheduled(VISITS, {"D1", "D8", "U1"}, None) == ("U2", "D8")

    def test_needs_a_scheduled_visit_dispensed(self) -> None:
        with pytest.raises(UnscheduledNotAllowed) as caught:
            next_unscheduled(VISITS, set(), None)
        assert caught.value.code == "unscheduled_not_allowed"

    def test_at_most_the_studys_limit(self) -> None:
        with pytest.raises(UnscheduledNotAllowed, match="at most 2"):
            next_unscheduled(VISITS, {"D1", "U1", "U2"}, 2)


class TestStudyRule:
    def test_the_example_studies_allow_unscheduled_dispensations(self) -> None:
        assert make_study().unscheduled == Unscheduled("last_visit", 2)

    def test_absent_section_means_none(self) -> None:
        doc = study_document()
        doc.pop("unscheduled", None)
        assert make_study(doc).unscheduled is None

    def test_not_allowed_means_none(self) -> None:
        doc = set_path(study_document(), "unscheduled.allowed", False)
        assert make_study(doc).unscheduled is None

    def test_unknown_kit_rule(self) -> None:
        study = replace(make_study(), unscheduled=Unscheduled("any_kit"))
        assert [p.path for p in study_problems(study)] == ["unscheduled.kit_rule"]

    def test_a_visit_named_like_an_unscheduled_one(self) -> None:
        study = make_study()
        visits = (*study.visits[:-1], replace(study.visits[-1], code="U9"))
        problems = study_problems(replace(study, visits=visits))
        assert "visits[7].code" in [p.path for p in problems]

    def test_unknown_time_zone(self) -> None:
        study = make_study()
        sites = (replace(study.sites[0], timezone="Europe/Nowhere"), *study.sites[1:])
        problems = study_problems(replace(study, sites=sites))
        assert [str(p) for p in problems] == [
            "sites[0].timezone: unknown time zone 'Europe/Nowhere'"
        ]
