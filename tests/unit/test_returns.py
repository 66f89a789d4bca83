"""Kits expected back after a discontinuation: the last dispensation's kits still held."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.domain.kits import KitStatus
from app.domain.returns import HandedOut, expected_back

T0 = datetime(2026, 12, 1, 9, tzinfo=UTC)


def kit(
    number: str,
    *,
    subject: str = "S-1",
    visit: str = "D1",
    dispensation: int = 1,
    day: int = 0,
    ended_day: int = 5,
    status: KitStatus = KitStatus.DISPENSED,
) -> HandedOut:
    return HandedOut(
        subject_id=subject,
        discontinued_at=T0 + timedelta(days=ended_day),
        dispensation_id=dispensation,
        visit=visit,
        dispensed_at=T0 + timedelta(days=day),
        kit_number=number,
        status=status,
    )


def test_only_the_last_dispensation_before_the_end_and_only_kits_still_held() -> None:
    kits = [
        kit("K1", visit="D1", dispensation=1, day=0),
        kit("K3", visit="D4", dispensation=2, day=3),
        kit("K2", visit="D4", dispensation=2, day=3),
        kit("K4", visit="D4", dispensation=2, day=3, status=KitStatus.DAMAGED),
        kit("K9", visit="D8", dispensation=3, day=7),  # after the end: not this subject's last
    ]
    assert [k.kit_number for k in expected_back(kits)] == ["K2", "K3"]


def test_each_subject_apart_and_the_later_record_breaks_a_tie() -> None:
    kits = [
        kit("A1", subject="S-2", dispensation=4, day=1),
        kit("A2", subject="S-2", dispensation=5, day=1),
        kit("B1", subject="S-1", dispensation=1, day=0),
    ]
    assert [(k.subject_id, k.kit_number) for k in expected_back(kits)] == [
        ("S-1", "B1"),
        ("S-2", "A2"),
    ]


def test_nothing_owed_when_everything_came_back() -> None:
    assert expected_back([kit("K1", status=KitStatus.RETURNED)]) == []
