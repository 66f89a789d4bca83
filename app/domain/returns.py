"""Kits expected back after a discontinuation.

A subject who stops treatment may not have used everything handed out at their last visit:
the kits of the subject's last dispensation at or before the discontinuation (ties broken by
the later record), those still `dispensed` (not returned, lost or destroyed since), are
expected back at the pharmacy, where they are returned or their use is recorded. Kits of
earlier visits were used before the next visit came. A completed subject owes nothing. The
rule reads no arm and no kit type, so the list is the same whatever the arm.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from app.domain.kits import KitStatus


@dataclass(frozen=True, slots=True)
class HandedOut:
    """One kit handed out to a discontinued subject, as the pharmacy sees it (blinded)."""

    subject_id: str
    discontinued_at: datetime
    dispensation_id: int
    visit: str
    dispensed_at: datetime
    kit_number: str
    status: KitStatus


def expected_back(handed_out: Iterable[HandedOut]) -> list[HandedOut]:
    """The kits expected back, by subject then kit number (see the module docstring)."""
    by_subject: dict[str, list[HandedOut]] = {}
    for kit in handed_out:
        if kit.dispensed_at <= kit.discontinued_at:
            by_subject.setdefault(kit.subject_id, []).append(kit)
    owed: list[HandedOut] = []
    for subject_id in sorted(by_subject):
        kits = by_subject[subject_id]
        last = max((k.dispensed_at, k.dispensation_id) for k in kits)
        owed += sorted(
            (
                k
                for k in kits
                if (k.dispensed_at, k.dispensation_id) == last and k.status is KitStatus.DISPENSED
            ),
            key=lambda k: k.kit_number,
        )
    return owed
