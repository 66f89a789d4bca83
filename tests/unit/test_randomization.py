"""The seeded stream, permuted-block lists and randomization numbers.

The reference implementations below follow the module docstring one draw at a time; the
fast code must give the same words, lists and numbers.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections import Counter
from collections.abc import Mapping, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.domain.randomization import (
    SeededStream,
    Slot,
    _block_plan,
    _permuted_blocks,
    generate_lists,
    generate_stratum_list,
    number_range,
    randomization_numbers,
    stratum_key,
)

SEED = bytes(range(32))
OTHER_SEED = bytes(range(1, 33))
RATIO = {"PLACEBO": 1, "CYT107_QW": 1, "CYT107_BIW": 1}


def hmac_words(seed: bytes, label: str, blocks: int) -> list[int]:
    """The stream as the docstring defines it, straight from the hmac module."""
    data = b"".join(
        hmac.new(seed, label.encode() + b"\x00" + i.to_bytes(8, "big"), hashlib.sha256).digest()
        for i in range(blocks)
    )
    return list(struct.unpack(f">{8 * blocks}I", data))


class RiggedStream(SeededStream):
    """The seeded stream with every `every`-th word forced to 0xFFFFFFFF, to make rejections."""

    __slots__ = ("_every", "_made")

    def __init__(self, seed: bytes, label: str, every: int) -> None:
        super().__init__(seed, label)
        self._every = every
        self._made = 0

    def _blocks(self, count: int) -> bytes:
        words = list(struct.unpack(f">{8 * count}I", super()._blocks(count)))
        for i in range(len(words)):
            if (self._made + i) % self._every == 0:
                words[i] = 0xFFFFFFFF
        self._made += len(words)
        return struct.pack(f">{len(words)}I", *words)


def reference_list(
    stream: SeededStream, ratio: Mapping[str, int], sizes: Sequence[int], min_length: int
) -> list[Slot]:
    ordered_sizes = sorted(sizes)
    total = sum(ratio.values())
    slots: list[Slot] = []
    block = 0
    while len(slots) < min_length:
        block += 1
        size = ordered_sizes[stream.randbelow(len(ordered_sizes))]
        arms = [arm for arm in sorted(ratio) for _ in range(size // total * ratio[arm])]
        stream.shuffle(arms)
        slots.extend(Slot(len(slots) + 1, block, size, arm) for arm in arms)
    return slots


def reference_numbers(seed: bytes, label: str, count: int, low: int, high: int) -> list[int]:
    stream = SeededStream(seed, label)
    drawn: list[int] = []
    while len(drawn) < count:
        number = low + stream.randbelow(high - low + 1)
        if number not in drawn:
            drawn.append(number)
    return drawn


@st.composite
def ratios_and_sizes(draw: st.DrawFn) -> tuple[dict[str, int], list[int]]:
    n_arms = draw(st.integers(2, 4))
    ratio = {f"ARM{i}": draw(st.integers(1, 4)) for i in range(n_arms)}
    total = sum(ratio.values())
    multiples = draw(st.lists(st.integers(1, 3), min_size=1, max_size=3, unique=True))
    return ratio, [total * m for m in multiples]


class TestSeededStreamKnownAnswer:
    def test_first_words_are_the_hmac_blocks(self) -> None:
        stream = SeededStream(SEED, "iris-7a|live|FR01")

        words = [stream.next_word() for _ in range(24)]

        assert words == hmac_words(SEED, "iris-7a|live|FR01", 3)

    def test_pinned_first_words(self) -> None:
        # Pinned once from HMAC-SHA256(bytes(range(32)), b"iris-7a|live|FR01\x00" + 8 zero
        # bytes); a change here changes every list ever generated.
        expected = [0x6F347601, 0xD50C1AC4, 0xEED23A83, 0xE2064A5B]
        stream = SeededStream(SEED, "iris-7a|live|FR01")

        assert [stream.next_word() for _ in range(4)] == expected
        assert hmac_words(SEED, "iris-7a|live|FR01", 1)[:4] == expected

    def test_words_across_many_refills(self) -> None:
        stream = SeededStream(SEED, "long")

        words = [stream.next_word() for _ in range(3000)]

        assert words == hmac_words(SEED, "long", 375)

    def test_next_words_continues_the_same_stream(self) -> None:
        one_by_one = SeededStream(SEED, "x")
        in_bulk = SeededStream(SEED, "x")

        expected = [one_by_one.next_word() for _ in range(1000)]
        got = [in_bulk.next_word(), *in_bulk.next_words(900), *in_bulk.next_words(99)]

        assert got == expected

    def test_non_ascii_label_is_utf8(self) -> None:
        assert SeededStream(SEED, "µg|é").next_word() == hmac_words(SEED, "µg|é", 1)[0]

    @pytest.mark.parametrize("seed", [b"", b"short", bytes(31), bytes(33)])
    def test_seed_must_be_32_bytes(self, seed: bytes) -> None:
        with pytest.raises(ValueError, match="32 bytes"):
            SeededStream(seed, "x")

    def test_repr_hides_the_seed(self) -> None:
        assert SEED.hex() not in repr(SeededStream(SEED, "x"))


class TestRandbelow:
    def test_every_value_is_hit(self) -> None:
        stream = SeededStream(SEED, "hits")

        counts = Counter(stream.randbelow(7) for _ in range(7000))

        assert sorted(counts) == list(range(7))
        assert all(800 < c < 1200 for c in counts.values())

    def test_is_word_modulo_n_when_not_rejected(self) -> None:
        words = hmac_words(SEED, "mod", 1)
        stream = SeededStream(SEED, "mod")

        assert [stream.randbelow(10) for _ in range(8)] == [w % 10 for w in words]

    def test_rejected_words_are_skipped(self) -> None:
        # Every other word is 0xFFFFFFFF, above the limit for n = 3, so the draws take the
        # words at odd positions only.
        stream = RiggedStream(SEED, "rej", every=2)
        plain = hmac_words(SEED, "rej", 2)

        assert [stream.randbelow(3) for _ in range(8)] == [plain[i] % 3 for i in range(1, 16, 2)]

    def test_one_always_gives_zero_and_consumes_a_word(self) -> None:
        stream = SeededStream(SEED, "one")

        assert stream.randbelow(1) == 0
        assert stream.next_word() == hmac_words(SEED, "one", 1)[1]

    def test_largest_n_takes_the_word(self) -> None:
        assert SeededStream(SEED, "big").randbelow(2**32) == hmac_words(SEED, "big", 1)[0]

    @pytest.mark.parametrize("n", [0, -1, 2**32 + 1])
    def test_out_of_range(self, n: int) -> None:
        with pytest.raises(ValueError, match="randbelow"):
            SeededStream(SEED, "x").randbelow(n)


class TestShuffleAndRandom:
    def test_shuffle_is_fisher_yates_from_the_end(self) -> None:
        items = list(range(10))
        draws = SeededStream(SEED, "fy")
        expected = list(range(10))
        for i in range(9, 0, -1):
            j = draws.randbelow(i + 1)
            expected[i], expected[j] = expected[j], expected[i]

        SeededStream(SEED, "fy").shuffle(items)

        assert items == expected
        assert sorted(items) == list(range(10))

    def test_random_is_word_over_two_to_the_32(self) -> None:
        stream = SeededStream(SEED, "r")

        values = [stream.random() for _ in range(8)]

        assert values == [w / 2**32 for w in hmac_words(SEED, "r", 1)]
        assert all(0 <= v < 1 for v in values)


class TestStratumKey:
    def test_site_and_levels_in_factor_order(self) -> None:
        key = stratum_key("FR01", {"age": "lt65", "shock": "yes"}, ["shock", "age"])

        assert key == "FR01|shock=yes|age=lt65"

    def test_not_by_site(self) -> None:
        assert stratum_key(None, {"shock": "no"}, ["shock"]) == "*|shock=no"

    def test_site_only(self) -> None:
        assert stratum_key("US07", {}, []) == "US07"

    @pytest.mark.parametrize(
        ("site", "levels", "order", "message"),
        [
            ("FR01", {"shock": "yes"}, [], "do not match"),
            ("FR01", {}, ["shock"], "do not match"),
            ("FR01", {"shock": "yes"}, ["shock", "shock"], "listed twice"),
            ("FR|01", {}, [], "invalid site"),
            ("*", {}, [], "invalid site"),
            ("FR01", {"shock": "y|n"}, ["shock"], "invalid factor or level"),
            ("FR01", {"sh=ock": "y"}, ["sh=ock"], "invalid factor or level"),
        ],
    )
    def test_ambiguous_or_mismatched_input_refused(
        self, site: str, levels: dict[str, str], order: list[str], message: str
    ) -> None:
        with pytest.raises(ValueError, match=message):
            stratum_key(site, levels, order)


class TestPermutedBlocksBalance:
    @settings(max_examples=150, deadline=None)
    @given(params=ratios_and_sizes(), min_length=st.integers(0, 80), label=st.text(max_size=8))
    def test_every_block_is_balanced_and_the_list_whole(
        self, params: tuple[dict[str, int], list[int]], min_length: int, label: str
    ) -> None:
        ratio, sizes = params
        total = sum(ratio.values())

        slots = generate_stratum_list(SEED, label, ratio, sizes, min_length)

        assert min_length <= len(slots) < min_length + max(sizes)
        assert [s.sequence for s in slots] == list(range(1, len(slots) + 1))
        blocks: dict[int, list[Slot]] = {}
        for slot in slots:
            blocks.setdefault(slot.block, []).append(slot)
        assert list(blocks) == list(range(1, len(blocks) + 1))
        for members in blocks.values():
            size = members[0].block_size
            assert size in sizes
            assert len(members) == size
            assert all(m.block_size == size for m in members)
            counts = Counter(m.arm for m in members)
            assert counts == {arm: size // total * w for arm, w in ratio.items()}

    @settings(max_examples=100, deadline=None)
    @given(params=ratios_and_sizes(), min_length=st.integers(0, 60), label=st.text(max_size=8))
    def test_matches_the_one_draw_at_a_time_reference(
        self, params: tuple[dict[str, int], list[int]], min_length: int, label: str
    ) -> None:
        ratio, sizes = params

        slots = generate_stratum_list(SEED, label, ratio, sizes, min_length)

        assert slots == reference_list(SeededStream(SEED, label), ratio, sizes, min_length)

    @pytest.mark.parametrize("every", [2, 3, 7, 50])
    def test_rejected_words_give_the_reference_list(self, every: int) -> None:
        # Words of 0xFFFFFFFF are rejected by randbelow; the fast path must step aside.
        ratio, sizes = {"A": 1, "B": 2}, [3, 6, 9]
        plan = _block_plan(ratio, sizes)

        slots = _permuted_blocks(RiggedStream(SEED, "r", every), plan, 100, {})

        assert slots == reference_list(RiggedStream(SEED, "r", every), ratio, sizes, 100)

    def test_large_blocks_without_outcome_table(self) -> None:
        ratio, sizes = {"A": 1, "B": 1}, [8, 10]

        slots = generate_stratum_list(SEED, "big", ratio, sizes, 200)

        assert slots == reference_list(SeededStream(SEED, "big"), ratio, sizes, 200)

    def test_slot_has_no_post_init(self) -> None:
        # Generation fills Slot's fields without calling __init__ (see _SLOT_SETTERS); a
        # validating __post_init__ added to Slot would be skipped there.
        assert not hasattr(Slot, "__post_init__")

    def test_zero_length_is_empty(self) -> None:
        assert generate_stratum_list(SEED, "x", RATIO, [3, 6], 0) == []


class TestPermutedBlocksReproducible:
    def test_same_seed_same_list(self) -> None:
        first = generate_stratum_list(SEED, "iris-7a|live|FR01", RATIO, [3, 6], 48)
        second = generate_stratum_list(SEED, "iris-7a|live|FR01", RATIO, [3, 6], 48)

        assert first == second

    def test_different_seeds_differ(self) -> None:
        first = generate_stratum_list(SEED, "iris-7a|live|FR01", RATIO, [3, 6], 48)
        second = generate_stratum_list(OTHER_SEED, "iris-7a|live|FR01", RATIO, [3, 6], 48)

        assert [s.arm for s in first] != [s.arm for s in second]

    def test_different_labels_differ(self) -> None:
        first = generate_stratum_list(SEED, "iris-7a|live|FR01", RATIO, [3, 6], 48)
        second = generate_stratum_list(SEED, "iris-7a|live|FR02", RATIO, [3, 6], 48)

        assert [s.arm for s in first] != [s.arm for s in second]

    @settings(max_examples=50, deadline=None)
    @given(short=st.integers(0, 40), extra=st.integers(0, 60))
    def test_a_longer_list_extends_the_shorter_one(self, short: int, extra: int) -> None:
        # Extending a stratum regenerates it longer and keeps the slots past the old end.
        shorter = generate_stratum_list(SEED, "x", RATIO, [3, 6], short)
        longer = generate_stratum_list(SEED, "x", RATIO, [3, 6], short + extra)

        assert longer[: len(shorter)] == shorter

    def test_order_of_sizes_and_ratio_does_not_matter(self) -> None:
        reordered = {"CYT107_BIW": 1, "PLACEBO": 1, "CYT107_QW": 1}

        first = generate_stratum_list(SEED, "x", RATIO, [3, 6], 48)
        second = generate_stratum_list(SEED, "x", reordered, [6, 3], 48)

        assert first == second


class TestPermutedBlocksValidation:
    @pytest.mark.parametrize(
        ("ratio", "sizes", "message"),
        [
            ({"A": 1, "B": 1}, [3], "not a multiple of the ratio sum 2"),
            ({"A": 1, "B": 1}, [0], "not a multiple"),
            ({"A": 1, "B": 0}, [2], "positive integer"),
            ({"A": 1, "B": -1}, [2], "positive integer"),
            ({"A": 1, "B": 1}, [], "at least one block size"),
            ({"A": 1}, [1], "at least two arms"),
            ({"A": 1, "B": 1}, [2, 2], "listed twice"),
        ],
    )
    def test_bad_parameters(self, ratio: dict[str, int], sizes: list[int], message: str) -> None:
        with pytest.raises(ValueError, match=message):
            generate_stratum_list(SEED, "x", ratio, sizes, 10)

    def test_negative_length(self) -> None:
        with pytest.raises(ValueError, match="min_length"):
            generate_stratum_list(SEED, "x", RATIO, [3], -1)


class TestGenerateLists:
    def test_each_stratum_is_its_own_labelled_list(self) -> None:
        strata = ["FR01|shock=yes", "FR01|shock=no", "FR02|shock=yes"]

        lists = generate_lists(SEED, "iris-7a", "live", strata, RATIO, [3, 6], 24)

        assert list(lists) == strata
        for stratum in strata:
            label = f"iris-7a|live|{stratum}"
            assert lists[stratum] == generate_stratum_list(SEED, label, RATIO, [3, 6], 24)

    def test_uat_lists_differ_from_live(self) -> None:
        live = generate_lists(SEED, "iris-7a", "live", ["FR01"], RATIO, [3, 6], 48)
        uat = generate_lists(SEED, "iris-7a", "uat", ["FR01"], RATIO, [3, 6], 48)

        assert [s.arm for s in live["FR01"]] != [s.arm for s in uat["FR01"]]

    def test_a_stratum_does_not_depend_on_the_others(self) -> None:
        alone = generate_lists(SEED, "iris-7a", "live", ["FR02"], RATIO, [3, 6], 30)
        together = generate_lists(SEED, "iris-7a", "live", ["FR01", "FR02"], RATIO, [3, 6], 30)

        assert alone["FR02"] == together["FR02"]

    @pytest.mark.parametrize(
        ("slug", "mode", "strata", "message"),
        [
            ("iris-7a", "test", ["FR01"], "mode"),
            ("iris|7a", "live", ["FR01"], "slug"),
            ("", "live", ["FR01"], "slug"),
            ("iris-7a", "live", ["FR01", "FR01"], "twice"),
            ("iris-7a", "live", [""], "empty"),
        ],
    )
    def test_bad_input(self, slug: str, mode: str, strata: list[str], message: str) -> None:
        with pytest.raises(ValueError, match=message):
            generate_lists(SEED, slug, mode, strata, RATIO, [3], 3)  # type: ignore[arg-type]


class TestRandomizationNumbers:
    def test_distinct_and_in_range(self) -> None:
        numbers = randomization_numbers(SEED, "iris-7a|live|numbers", 5000, 100000, 999999)

        assert len(numbers) == len(set(numbers)) == 5000
        assert all(100000 <= n <= 999999 for n in numbers)

    @pytest.mark.parametrize(("count", "low", "high"), [(50, 1, 60), (300, 10, 400), (20, 5, 24)])
    def test_draw_order_is_the_one_at_a_time_draw(self, count: int, low: int, high: int) -> None:
        got = randomization_numbers(SEED, "n", count, low, high)

        assert got == reference_numbers(SEED, "n", count, low, high)

    def test_full_range_is_a_permutation(self) -> None:
        assert sorted(randomization_numbers(SEED, "n", 100, 1, 100)) == list(range(1, 101))

    def test_reproducible_and_label_dependent(self) -> None:
        first = randomization_numbers(SEED, "iris-7a|live|numbers", 100, 100000, 999999)

        assert first == randomization_numbers(SEED, "iris-7a|live|numbers", 100, 100000, 999999)
        assert first != randomization_numbers(SEED, "iris-7a|uat|numbers", 100, 100000, 999999)

    def test_zero_count(self) -> None:
        assert randomization_numbers(SEED, "n", 0, 1, 1) == []

    @pytest.mark.parametrize(
        ("count", "low", "high", "message"),
        [
            (11, 1, 10, "cannot draw 11 distinct numbers"),
            (-1, 1, 10, "negative"),
            (0, 5, 4, "empty number range"),
            (1, 0, 2**32, r"more than 2\*\*32"),
        ],
    )
    def test_impossible_requests(self, count: int, low: int, high: int, message: str) -> None:
        with pytest.raises(ValueError, match=message):
            randomization_numbers(SEED, "n", count, low, high)


class TestNumberRange:
    @pytest.mark.parametrize(
        ("total", "expected"),
        [
            (0, (100000, 999999)),
            (90000, (100000, 999999)),
            (90001, (1000000, 9999999)),
            (900000, (1000000, 9999999)),
            (1_000_000, (10000000, 99999999)),
        ],
    )
    def test_six_digits_then_ten_times_sparse(self, total: int, expected: tuple[int, int]) -> None:
        low, high = number_range(total)

        assert (low, high) == expected
        assert high - low + 1 >= 10 * total

    def test_negative(self) -> None:
        with pytest.raises(ValueError, match="negative"):
            number_range(-1)
