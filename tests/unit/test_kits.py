"""Kit numbers (Damm check digit), type assignment, the status life cycle and lot plans."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable
from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.domain.errors import Conflict, DomainError
from app.domain.kits import (
    ALLOWED_TRANSITIONS,
    KIT_NUMBER_DIGITS,
    InvalidKitNumber,
    InvalidKitTransition,
    KitNumber,
    KitStatus,
    Lot,
    RandomSource,
    SecretsRandom,
    assign_kit_types,
    check_transition,
    damm_check_digit,
    damm_valid,
    generate_kit_numbers,
    plan_lots,
)


class ScriptedRandom:
    """Returns the scripted values in turn (each taken modulo n), then zeros."""

    def __init__(self, values: Iterable[int] = ()) -> None:
        self._values = iter(values)

    def randbelow(self, n: int, /) -> int:
        return next(self._values, 0) % n


def fisher_yates_scripts(n: int) -> list[list[int]]:
    """Every sequence of draws a Fisher-Yates shuffle of n items can make."""
    return [list(s) for s in itertools.product(*(range(i + 1) for i in range(n - 1, 0, -1)))]


def with_check(body: str) -> str:
    return body + damm_check_digit(body)


bodies = st.integers(min_value=0, max_value=10**7 - 1).map(lambda n: f"{n:07d}")


class TestDammCheckDigit:
    def test_known_vector(self) -> None:
        assert damm_check_digit("572") == "4"
        assert damm_valid("5724")

    def test_wrong_check_digit_is_invalid(self) -> None:
        assert not damm_valid("5723")

    def test_leading_zeros_do_not_change_the_digit(self) -> None:
        assert damm_check_digit("000572") == "4"

    def test_non_digits(self) -> None:
        assert not damm_valid("57a4")
        assert not damm_valid("")
        with pytest.raises(ValueError, match="digits"):
            damm_check_digit("5 7")

    def test_every_adjacent_transposition_changes_the_digit_from_every_state(self) -> None:
        # One leading digit reaches every interim state, so this covers every position.
        for p, x, y in itertools.product("0123456789", repeat=3):
            if x != y:
                assert damm_check_digit(p + x + y) != damm_check_digit(p + y + x)


class TestTypingErrorsAreRejected:
    @given(bodies)
    def test_every_single_digit_substitution(self, body: str) -> None:
        number = with_check(body)
        assert damm_valid(number)
        for i, digit in itertools.product(range(len(number)), "0123456789"):
            if digit != number[i]:
                assert not damm_valid(number[:i] + digit + number[i + 1 :])

    @given(bodies)
    def test_every_adjacent_transposition(self, body: str) -> None:
        number = with_check(body)
        for i in range(len(number) - 1):
            if number[i] != number[i + 1]:
                swapped = number[:i] + number[i + 1] + number[i] + number[i + 2 :]
                assert not damm_valid(swapped)


class TestKitNumberParse:
    def test_canonical_form(self) -> None:
        assert str(KitNumber.parse("12345671")) == "12345671"

    @pytest.mark.parametrize("text", ["1234-5671", "1234 5671", " 12 34-56 71 ", "1-2-3-4-5-6-7-1"])
    def test_spaces_and_dashes_are_ignored(self, text: str) -> None:
        number = KitNumber.parse(text)

        assert number == KitNumber("12345671")
        assert number.body == "1234567"

    def test_wrong_check_digit(self) -> None:
        with pytest.raises(InvalidKitNumber, match="check digit") as caught:
            KitNumber.parse("12345672")

        assert caught.value.code == "invalid_kit_number"
        assert isinstance(caught.value, DomainError)

    @pytest.mark.parametrize(
        "text", ["", "5724", "123456710", "1234567a", "1234_5671", "١٢٣٤٥٦٧١", "12345671\n2"]
    )
    def test_bad_format(self, text: str) -> None:
        with pytest.raises(InvalidKitNumber, match="not a kit number"):
            KitNumber.parse(text)

    def test_direct_construction_is_checked(self) -> None:
        with pytest.raises(InvalidKitNumber):
            KitNumber("12345672")


class TestGenerateKitNumbers:
    def test_distinct_valid_and_of_the_right_length(self) -> None:
        numbers = generate_kit_numbers(2000)

        assert len(set(numbers)) == 2000
        assert all(len(n) == KIT_NUMBER_DIGITS and damm_valid(n) for n in numbers)
        assert all(str(KitNumber.parse(n)) == n for n in numbers)

    def test_small_bodies_are_zero_padded(self) -> None:
        assert generate_kit_numbers(1, rng=ScriptedRandom([42])) == ["00000427"]

    def test_a_repeated_draw_is_drawn_again(self) -> None:
        numbers = generate_kit_numbers(2, rng=ScriptedRandom([42, 42, 43]))

        assert numbers == ["00000427", "00000434"]

    def test_existing_numbers_are_avoided(self) -> None:
        numbers = generate_kit_numbers(1, existing={"00000427"}, rng=ScriptedRandom([42, 43]))

        assert numbers == ["00000434"]

    def test_with_a_secrets_random_source(self) -> None:
        source: RandomSource = SecretsRandom()

        assert len(set(generate_kit_numbers(50, rng=source))) == 50

    def test_zero(self) -> None:
        assert generate_kit_numbers(0) == []

    def test_negative_count(self) -> None:
        with pytest.raises(ValueError, match="negative"):
            generate_kit_numbers(-1)

    def test_more_than_the_number_space(self) -> None:
        with pytest.raises(ValueError, match="number space"):
            generate_kit_numbers(10**7, existing={"00000000"})


class TestAssignKitTypes:
    NUMBERS = ("10000009", "20000007", "30000003", "40000001", "50000005")

    def test_counts_preserved_and_numbers_kept_in_order(self) -> None:
        pairs = assign_kit_types(self.NUMBERS, {"KT_IL7": 3, "KT_PBO": 2}, SecretsRandom())

        assert [number for number, _ in pairs] == list(self.NUMBERS)
        assert Counter(kit_type for _, kit_type in pairs) == {"KT_IL7": 3, "KT_PBO": 2}

    def test_every_arrangement_is_equally_likely(self) -> None:
        numbers = self.NUMBERS[:4]
        arrangements = Counter(
            tuple(t for _, t in assign_kit_types(numbers, {"A": 2, "B": 2}, ScriptedRandom(s)))
            for s in fisher_yates_scripts(4)
        )

        assert len(arrangements) == 6
        assert set(arrangements.values()) == {4}

    def test_counts_must_match_the_numbers(self) -> None:
        with pytest.raises(ValueError, match="add up"):
            assign_kit_types(self.NUMBERS, {"A": 2, "B": 2}, SecretsRandom())

    def test_negative_count(self) -> None:
        with pytest.raises(ValueError, match="negative"):
            assign_kit_types(self.NUMBERS[:1], {"A": 2, "B": -1}, SecretsRandom())

    def test_numbers_must_be_distinct(self) -> None:
        with pytest.raises(ValueError, match="distinct"):
            assign_kit_types(["10000009", "10000009"], {"A": 2}, SecretsRandom())


S = KitStatus
EXPECTED_TRANSITIONS = {
    (S.AT_DEPOT, S.IN_TRANSIT),
    (S.AT_DEPOT, S.QUARANTINED),
    (S.AT_DEPOT, S.EXPIRED),
    (S.AT_DEPOT, S.DESTROYED),
    (S.AT_DEPOT, S.DAMAGED),
    (S.AT_DEPOT, S.LOST),
    (S.IN_TRANSIT, S.AT_SITE),
    (S.IN_TRANSIT, S.DAMAGED),
    (S.IN_TRANSIT, S.LOST),
    (S.IN_TRANSIT, S.QUARANTINED),
    (S.AT_SITE, S.DISPENSED),
    (S.AT_SITE, S.DAMAGED),
    (S.AT_SITE, S.LOST),
    (S.AT_SITE, S.QUARANTINED),
    (S.AT_SITE, S.EXPIRED),
    (S.AT_SITE, S.RETURNED),
    (S.QUARANTINED, S.AT_SITE),
    (S.QUARANTINED, S.AT_DEPOT),
    (S.QUARANTINED, S.DESTROYED),
    (S.QUARANTINED, S.RETURNED),
    (S.DISPENSED, S.RETURNED),
    (S.DAMAGED, S.DESTROYED),
    (S.LOST, S.DESTROYED),
    (S.EXPIRED, S.DESTROYED),
    (S.RETURNED, S.DESTROYED),
}
ALL_PAIRS = list(itertools.product(KitStatus, repeat=2))


class TestKitTransitions:
    def test_table_is_the_documented_life_cycle(self) -> None:
        table = {(a, b) for a, targets in ALLOWED_TRANSITIONS.items() for b in targets}

        assert table == EXPECTED_TRANSITIONS
        assert set(ALLOWED_TRANSITIONS) == set(KitStatus)

    @pytest.mark.parametrize(("current", "new"), sorted(EXPECTED_TRANSITIONS))
    def test_allowed(self, current: KitStatus, new: KitStatus) -> None:
        check_transition("12345671", current, new)

    @pytest.mark.parametrize(
        ("current", "new"), [p for p in ALL_PAIRS if p not in EXPECTED_TRANSITIONS]
    )
    def test_refused(self, current: KitStatus, new: KitStatus) -> None:
        with pytest.raises(InvalidKitTransition) as caught:
            check_transition("12345671", current, new)

        assert caught.value.code == "invalid_kit_transition"
        assert isinstance(caught.value, Conflict)
        assert "12345671" in caught.value.detail

    @pytest.mark.parametrize(
        ("held_at", "released_to"),
        [(S.AT_DEPOT, S.AT_DEPOT), (S.IN_TRANSIT, S.AT_SITE), (S.AT_SITE, S.AT_SITE)],
    )
    def test_release_from_quarantine_goes_back(
        self, held_at: KitStatus, released_to: KitStatus
    ) -> None:
        check_transition("12345671", S.QUARANTINED, released_to, quarantined_from=held_at)

    @pytest.mark.parametrize(
        ("held_at", "released_to"),
        [(S.AT_DEPOT, S.AT_SITE), (S.IN_TRANSIT, S.AT_DEPOT), (S.AT_SITE, S.AT_DEPOT)],
    )
    def test_release_from_quarantine_elsewhere_is_refused(
        self, held_at: KitStatus, released_to: KitStatus
    ) -> None:
        with pytest.raises(InvalidKitTransition):
            check_transition("12345671", S.QUARANTINED, released_to, quarantined_from=held_at)


class TestPlanLots:
    FIRST_EXPIRY = date(2027, 6, 30)

    def test_kits_split_into_lots_of_at_most_kits_per_lot(self) -> None:
        plan = plan_lots({"KT_IL7": 250, "KT_PBO": 90}, 120, self.FIRST_EXPIRY, 540)

        totals: Counter[str] = Counter()
        for planned in plan:
            totals[planned.kit_type] += planned.kit_count
            assert 1 <= planned.kit_count <= 120
        assert totals == {"KT_IL7": 250, "KT_PBO": 90}
        assert sorted({p.lot.code for p in plan}) == ["L0001", "L0002", "L0003"]

    def test_every_lot_holds_every_type(self) -> None:
        # Two subjects given kits of one lot may be on either treatment: a lot is no proxy
        # for a type, and unblinding one subject tells nothing about the rest of its lot.
        plan = plan_lots({"KT_IL7": 250, "KT_PBO": 90}, 120, self.FIRST_EXPIRY, 540)

        types_by_lot: dict[Lot, list[str]] = {}
        for planned in plan:
            types_by_lot.setdefault(planned.lot, []).append(planned.kit_type)
        assert [lot.expiry_date for lot in types_by_lot] == [
            self.FIRST_EXPIRY + timedelta(days=540 * r) for r in range(3)
        ]
        assert all(sorted(types) == ["KT_IL7", "KT_PBO"] for types in types_by_lot.values())

    def test_fewer_kits_than_rounds(self) -> None:
        plan = plan_lots({"A": 30, "B": 1}, 10, self.FIRST_EXPIRY, 365)

        assert [p.kit_type for p in plan].count("B") == 1
        assert sum(p.kit_count for p in plan) == 31

    def test_nothing_to_plan(self) -> None:
        assert plan_lots({"A": 0}, 10, self.FIRST_EXPIRY, 365) == []

    @pytest.mark.parametrize(
        ("counts", "per_lot", "shelf_life"),
        [({"A": 1}, 0, 365), ({"A": 1}, 10, 0), ({"A": -1}, 10, 365)],
    )
    def test_invalid_arguments(self, counts: dict[str, int], per_lot: int, shelf_life: int) -> None:
        with pytest.raises(ValueError, match=r"positive|negative"):
            plan_lots(counts, per_lot, self.FIRST_EXPIRY, shelf_life)


class TestSecretsRandom:
    def test_values_stay_in_range_and_cover_it_evenly(self) -> None:
        rng = SecretsRandom()
        draws = Counter(rng.randbelow(6) for _ in range(60_000))

        assert set(draws) == set(range(6))
        # 10,000 expected per face; a fair source is within 5% with overwhelming probability.
        assert all(9_500 < count < 10_500 for count in draws.values()), draws

    def test_a_range_just_past_a_power_of_two_is_not_biased(self) -> None:
        # 2**63 + 1: a plain modulo of a 64-bit word would make values below 2**63 - 1
        # twice as likely as the rest; rejection sampling keeps both halves even.
        n = (1 << 63) + 1
        rng = SecretsRandom()
        upper = sum(rng.randbelow(n) >= n // 2 for _ in range(20_000))

        assert 9_400 < upper < 10_600

    def test_huge_and_trivial_ranges(self) -> None:
        rng = SecretsRandom()

        assert rng.randbelow(1) == 0
        assert 0 <= rng.randbelow(1 << 80) < 1 << 80
        with pytest.raises(ValueError, match="positive"):
            rng.randbelow(0)

    def test_two_sources_do_not_repeat_each_other(self) -> None:
        first = [SecretsRandom().randbelow(1 << 60) for _ in range(3)]
        second = [SecretsRandom().randbelow(1 << 60) for _ in range(3)]

        assert first != second
