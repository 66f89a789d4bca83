"""The length of a sealed column tells nothing (the `octet_length` side channel).

After a scripted trial through the use cases (tests.sealed_trial), every sealed column of
the database, found by scanning the metadata (so a new one is covered automatically), is
read: a per-record column has exactly one envelope length, strata with the same slot count
one length, a study definition a whole number of buckets. Run for both example studies, for
a study whose arm codes and kit type codes all differ in length (and whose strata are long
enough for block numbers of two digits), and for a minimization study (sealed traces).
"""

from __future__ import annotations

import pytest

from app.bootstrap import Container
from tests.sealed_trial import (
    BUCKETED,
    BY_SLOT_COUNT,
    STUDIES,
    revealing,
    scripted_trial,
    sealed_lengths,
)


@pytest.mark.parametrize("name", sorted(STUDIES))
def test_no_sealed_column_length_depends_on_its_value(container: Container, name: str) -> None:
    arms = scripted_trial(container, STUDIES[name]())
    assert len(arms) == 3

    lengths = sealed_lengths(container)

    minimization = name == "minimized"
    for column in ("allocation.arm_sealed", "kit.kit_type_sealed", BUCKETED, BY_SLOT_COUNT):
        assert lengths[column], f"{column} holds nothing: the trial did not exercise it"
    assert bool(lengths["allocation.trace_sealed"]) is minimization
    found = revealing(lengths)
    assert not found, "\n".join(["sealed lengths that tell values apart:", *found])
