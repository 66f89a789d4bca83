"""Randomization lists: a seeded stream, permuted blocks, randomization numbers.

Everything here is a pure function of a secret 32-byte seed and text labels, so an unblinded
statistician can regenerate any list from this description alone.

Seeded stream (`SeededStream(seed, label)`)
    Block i (i = 0, 1, 2, ...) is HMAC-SHA256(key=seed, msg=UTF-8(label) || 0x00 || i), with
    i written as 8 bytes big-endian. The stream is block 0 || block 1 || ..., read as
    big-endian unsigned 32-bit words (8 words per block).
    - `randbelow(n)`, 1 <= n <= 2**32: read words until one is below
      limit = 2**32 - (2**32 mod n) (rejection sampling, so unbiased); return word mod n.
    - `shuffle(x)`: Fisher-Yates from the last index down: for i = len(x)-1, ..., 1:
      j = randbelow(i + 1), swap x[i] and x[j].
    - `random()`: next word / 2**32, in [0, 1).

Permuted blocks (`generate_stratum_list(seed, label, ratio, block_sizes, min_length)`)
    One stream, labelled `label`. The arms are taken in ascending code order and the block
    sizes in ascending order (so neither the ratio's nor the file's order matters). Until the
    list holds at least `min_length` slots, append a block:
      1. size = sizes[randbelow(len(sizes))] (drawn even when there is a single size);
      2. the block holds, in arm-code order, size / sum(ratio) * ratio[arm] copies of each
         arm; it is shuffled with `shuffle`;
      3. its slots get the next sequence numbers (1-based in the stratum), the block number
         (1-based in the stratum) and the block size.
    A list is therefore whole blocks, and its length is at least `min_length`. The ratio
    needs two arms or more with positive integer weights, and the block sizes must be
    distinct multiples of sum(ratio); anything else is refused (ValueError).
    `generate_lists` labels each stratum "{study_slug}|{mode}|{stratum}" (mode "live" or
    "uat"), so every stratum's list is reproducible on its own and test lists differ from
    live ones. A stratum is named by `stratum_key`: "SITE|factor=level|..." in the study's
    factor order, with "*" for the site when the study does not stratify by site.

Randomization numbers (`randomization_numbers(seed, label, count, low, high)`)
    One stream, labelled e.g. "iris-7a|live|numbers". Draw low + randbelow(high - low + 1)
    repeatedly, skipping numbers already drawn, until `count` distinct numbers are held; they
    are returned in draw order. The caller gives them to the slots in a fixed order (strata by
    sorted key, then sequence), so a number says nothing about an arm or a block.
    `number_range(total)` is 6 digits (100000-999999) when 10 * total <= 900000, else the
    fewest digits d whose 9 * 10**(d-1) numbers are at least 10 * total. A range may hold at
    most 2**32 numbers, the reach of one word.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import math
import struct
from collections import deque
from collections.abc import Callable, Iterable, Mapping, MutableSequence, Sequence
from dataclasses import dataclass, fields
from itertools import islice, repeat
from operator import add, itemgetter, mod, mul
from typing import Final, Literal, TypeVar, get_args

T = TypeVar("T")
Mode = Literal["live", "uat"]

SEED_BYTES: Final = 32
_TWO_32: Final = 1 << 32
_WORDS_PER_BLOCK: Final = 8
_FIRST_BATCH_BLOCKS: Final = 4
_MAX_BATCH_BLOCKS: Final = 512
_COUNTER = struct.Struct(">Q").pack
_IPAD = bytes(0x36 for _ in range(64))
_OPAD = bytes(0x5C for _ in range(64))


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


class SeededStream:
    """The deterministic stream of 32-bit words described in the module docstring."""

    __slots__ = ("_batch", "_buf", "_counter", "_inner", "_outer", "_pos")

    def __init__(self, seed: bytes, label: str) -> None:
        if not isinstance(seed, bytes) or len(seed) != SEED_BYTES:
            raise ValueError(f"the seed must be {SEED_BYTES} bytes")
        # HMAC (RFC 2104) spelled out over two pre-keyed SHA-256 states, because copying them
        # per block is markedly faster than hmac.HMAC.copy(); the tests check it against hmac.
        key = seed.ljust(64, b"\x00")
        self._inner = hashlib.sha256(_xor(key, _IPAD) + label.encode() + b"\x00")
        self._outer = hashlib.sha256(_xor(key, _OPAD))
        self._counter = 0
        self._buf: tuple[int, ...] = ()
        self._pos = 0
        self._batch = _FIRST_BATCH_BLOCKS

    def __repr__(self) -> str:
        return f"SeededStream(<secret>, blocks={self._counter})"

    def _blocks(self, count: int) -> bytes:
        inner_copy = self._inner.copy
        outer_copy = self._outer.copy
        digests = []
        for counter in range(self._counter, self._counter + count):
            inner = inner_copy()
            inner.update(_COUNTER(counter))
            outer = outer_copy()
            outer.update(inner.digest())
            digests.append(outer.digest())
        self._counter += count
        return b"".join(digests)

    def _ensure(self, words: int) -> None:
        """Make at least `words` unread words available in the buffer."""
        unread = len(self._buf) - self._pos
        if unread >= words:
            return
        missing = words - unread
        blocks = max(-(-missing // _WORDS_PER_BLOCK), self._batch)
        self._batch = min(self._batch * 2, _MAX_BATCH_BLOCKS)
        fresh = struct.unpack(f">{blocks * _WORDS_PER_BLOCK}I", self._blocks(blocks))
        self._buf = self._buf[self._pos :] + fresh if unread else fresh
        self._pos = 0

    def next_word(self) -> int:
        if self._pos >= len(self._buf):
            self._ensure(1)
        word = self._buf[self._pos]
        self._pos += 1
        return word

    def next_words(self, count: int) -> tuple[int, ...]:
        """The next `count` words at once (the same words `count` calls to next_word give)."""
        if count < 0:
            raise ValueError("count cannot be negative")
        self._ensure(count)
        start = self._pos
        self._pos += count
        return self._buf[start : self._pos]

    def randbelow(self, n: int) -> int:
        if not 1 <= n <= _TWO_32:
            raise ValueError(f"randbelow needs 1 <= n <= 2**32, got {n}")
        limit = _TWO_32 - _TWO_32 % n
        while True:
            word = self.next_word()
            if word < limit:
                return word % n

    def shuffle(self, items: MutableSequence[T]) -> None:
        for i in range(len(items) - 1, 0, -1):
            j = self.randbelow(i + 1)
            items[i], items[j] = items[j], items[i]

    def random(self) -> float:
        return self.next_word() / _TWO_32


@dataclass(frozen=True, slots=True)
class Slot:
    """One line of a stratum's list (its randomization number is kept beside it)."""

    sequence: int  # 1-based in its stratum
    block: int  # 1-based
    block_size: int
    arm: str


def stratum_key(site: str | None, levels: Mapping[str, str], factor_order: Sequence[str]) -> str:
    """Canonical stratum name, e.g. "FR01|shock=yes|age=lt65"; "*" when not by site."""
    if len(set(factor_order)) != len(factor_order):
        raise ValueError("a factor is listed twice in the factor order")
    missing = [f for f in factor_order if f not in levels]
    extra = sorted(set(levels) - set(factor_order))
    if missing or extra:
        raise ValueError(f"levels do not match the factors (missing {missing}, extra {extra})")
    parts = [site if site is not None else "*"]
    if site is not None and (site in ("", "*") or "|" in site):
        raise ValueError(f"invalid site code {site!r}")
    for factor in factor_order:
        level = levels[factor]
        for code in (factor, level):
            if not code or "|" in code or "=" in code:
                raise ValueError(f"invalid factor or level code {code!r}")
        parts.append(f"{factor}={level}")
    return "|".join(parts)


@dataclass(frozen=True, slots=True)
class _Shape:
    """A block size's shuffle: its moduli (k, k-1, ..., 2) and, when k! is small, every
    outcome of the shuffle, indexed by the mixed-radix number of the draws."""

    size: int
    row_offsets: tuple[int, ...]  # of a _Row's slots: sequence - sequence before the block
    row_arms: tuple[str, ...]  # of a _Row's slots
    template: tuple[int, ...]  # arm indexes in arm-code order, before the shuffle
    moduli: tuple[int, ...]
    weights: tuple[int, ...]  # (k-1)!, (k-2)!, ..., 1
    outcomes: tuple[Callable[[_Row], tuple[Slot, ...]], ...] | None  # picks from a _Row


@dataclass(frozen=True, slots=True)
class _BlockPlan:
    arms: tuple[str, ...]  # ascending codes
    sizes: tuple[int, ...]  # ascending
    shapes: Mapping[int, _Shape]


# Every slot a block can hold, position-major: _Row[position * number of arms + arm index].
_Row = tuple[Slot, ...]
_MAX_OUTCOME_TABLE: Final = 5040  # 7!; larger blocks are shuffled in place instead


def _fisher_yates(template: Sequence[int], draws: Iterable[int]) -> list[int]:
    items = list(template)
    for i, j in zip(range(len(items) - 1, 0, -1), draws, strict=True):
        items[i], items[j] = items[j], items[i]
    return items


def _picker(arm_indexes: Sequence[int], n_arms: int) -> Callable[[_Row], tuple[Slot, ...]]:
    """Takes from a block's _Row the slots of this arm order, as a tuple (blocks hold at
    least two slots, so itemgetter returns a tuple)."""
    return itemgetter(*(position * n_arms + arm for position, arm in enumerate(arm_indexes)))


@functools.lru_cache(maxsize=64)
def _plan(ratio: tuple[tuple[str, int], ...], sizes: tuple[int, ...]) -> _BlockPlan:
    arms = tuple(arm for arm, _ in ratio)
    ratio_sum = sum(weight for _, weight in ratio)
    shapes = {}
    for size in sizes:
        template = tuple(i for i, (_, w) in enumerate(ratio) for _ in range(size // ratio_sum * w))
        moduli = tuple(range(size, 1, -1))
        weights = tuple(math.factorial(m - 1) for m in moduli)
        outcomes = None
        if math.factorial(size) <= _MAX_OUTCOME_TABLE:
            draws = itertools.product(*(range(m) for m in moduli))
            outcomes = tuple(_picker(_fisher_yates(template, d), len(arms)) for d in draws)
        row_offsets = tuple(1 + i // len(arms) for i in range(size * len(arms)))
        shapes[size] = _Shape(size, row_offsets, arms * size, template, moduli, weights, outcomes)
    return _BlockPlan(arms, sizes, shapes)


def _block_plan(ratio: Mapping[str, int], block_sizes: Sequence[int]) -> _BlockPlan:
    if len(ratio) < 2:
        raise ValueError("a randomization list needs at least two arms in the ratio")
    for arm, weight in ratio.items():
        if not isinstance(weight, int) or isinstance(weight, bool) or weight < 1:
            raise ValueError(f"the ratio of arm {arm!r} must be a positive integer, got {weight!r}")
    if not block_sizes:
        raise ValueError("at least one block size is needed")
    ratio_sum = sum(ratio.values())
    sizes = tuple(sorted(block_sizes))
    for size in sizes:
        if not isinstance(size, int) or size < 1 or size % ratio_sum:
            raise ValueError(f"block size {size!r} is not a multiple of the ratio sum {ratio_sum}")
    if len(set(sizes)) != len(sizes):
        raise ValueError(f"a block size is listed twice in {list(block_sizes)}")
    return _plan(tuple(sorted(ratio.items())), sizes)


# Fills a new Slot's fields through their slot descriptors, in field order. Building slots
# with Slot(...) costs twice as much: a frozen dataclass's __init__ goes through
# object.__setattr__ for every field. Slot has no __post_init__, so the result is the same.
_SLOT_SETTERS: Final = tuple(vars(Slot)[f.name].__set__ for f in fields(Slot))


def _row(shape: _Shape, before: int, block: int) -> _Row:
    """Every slot a block of this shape after sequence `before` can hold (see _Row)."""
    row = list(map(object.__new__, repeat(Slot, len(shape.row_arms))))
    values = (
        map(add, shape.row_offsets, repeat(before)),
        repeat(block),
        repeat(shape.size),
        shape.row_arms,
    )
    for setter, column in zip(_SLOT_SETTERS, values, strict=True):
        deque(map(setter, row, column), maxlen=0)
    return tuple(row)


def _permuted_blocks(
    stream: SeededStream,
    plan: _BlockPlan,
    min_length: int,
    shared: dict[int, _Row],
) -> list[Slot]:
    """The list of the module docstring, drawn from `stream`.

    A block of size k takes exactly k words (one for its size, k-1 for its shuffle) when
    none is rejected, and no word below 2**32 - max(largest size, number of sizes) can be
    rejected. So when every word the list can need is below that, blocks are read straight
    from the buffer and each shuffle is looked up by the mixed-radix number of its draws;
    otherwise (for a list of a thousand slots, about once in a million) the list is drawn
    through randbelow and shuffle. Both give the same list. Slots are immutable values and
    building a frozen dataclass dominates a large list, so equal slots are built once and
    shared: `shared` maps (sequence before the block, block, size), packed in one integer,
    to the block's _Row; it may be shared by lists of the same plan and min_length.
    """
    arms, sizes = plan.arms, plan.sizes
    n_arms, n_sizes = len(arms), len(sizes)
    max_size = sizes[-1]
    need = min_length + max_size  # a list of whole blocks never reads more words than this
    stream._ensure(need)
    buf, pos = stream._buf, stream._pos
    slots: list[Slot] = []
    extend = slots.extend
    sequence = block = 0
    if max(buf[pos : pos + need]) < _TWO_32 - max(max_size, n_sizes):
        shapes = [plan.shapes[size] for size in sizes]
        # A block number never exceeds min_length, nor a size max_size: the key is one-to-one.
        block_span, size_span = min_length + 1, max_size + 1
        while sequence < min_length:
            block += 1
            shape = shapes[buf[pos] % n_sizes]
            size = shape.size
            draws = map(mod, buf[pos + 1 : pos + size], shape.moduli)
            pos += size
            key = (sequence * block_span + block) * size_span + size
            row = shared.get(key)
            if row is None:
                row = shared[key] = _row(shape, sequence, block)
            if shape.outcomes is not None:
                extend(shape.outcomes[sum(map(mul, draws, shape.weights))](row))
            else:
                order = _fisher_yates(shape.template, draws)
                extend(row[t * n_arms + arm] for t, arm in enumerate(order))
            sequence += size
        stream._pos = pos
    else:
        while sequence < min_length:
            block += 1
            size = sizes[stream.randbelow(n_sizes)]
            order = list(plan.shapes[size].template)
            stream.shuffle(order)
            row = _row(plan.shapes[size], sequence, block)
            extend(row[t * n_arms + arm] for t, arm in enumerate(order))
            sequence += size
    return slots


def generate_stratum_list(
    seed: bytes,
    label: str,
    ratio: Mapping[str, int],
    block_sizes: Sequence[int],
    min_length: int,
) -> list[Slot]:
    """Permuted blocks for one stratum: whole blocks, at least `min_length` slots."""
    plan = _block_plan(ratio, block_sizes)
    if min_length < 0:
        raise ValueError("min_length cannot be negative")
    return _permuted_blocks(SeededStream(seed, label), plan, min_length, {})


def generate_lists(
    seed: bytes,
    study_slug: str,
    mode: Mode,
    strata: Sequence[str],
    ratio: Mapping[str, int],
    block_sizes: Sequence[int],
    min_length: int,
) -> dict[str, list[Slot]]:
    """One list per stratum, each labelled "{study_slug}|{mode}|{stratum}"."""
    if mode not in get_args(Mode):
        raise ValueError(f"mode must be 'live' or 'uat', got {mode!r}")
    if not study_slug or "|" in study_slug:
        raise ValueError(f"invalid study slug {study_slug!r}")
    if len(set(strata)) != len(strata):
        raise ValueError("a stratum is listed twice")
    if any(not stratum for stratum in strata):
        raise ValueError("a stratum name cannot be empty")
    plan = _block_plan(ratio, block_sizes)
    if min_length < 0:
        raise ValueError("min_length cannot be negative")
    shared: dict[int, _Row] = {}
    return {
        stratum: _permuted_blocks(
            SeededStream(seed, f"{study_slug}|{mode}|{stratum}"), plan, min_length, shared
        )
        for stratum in strata
    }


def randomization_numbers(seed: bytes, label: str, count: int, low: int, high: int) -> list[int]:
    """`count` distinct numbers drawn uniformly from [low, high], in draw order."""
    if count < 0:
        raise ValueError("count cannot be negative")
    if low > high:
        raise ValueError(f"empty number range [{low}, {high}]")
    span = high - low + 1
    if span < count:
        raise ValueError(f"cannot draw {count} distinct numbers from [{low}, {high}]")
    if span > _TWO_32:
        raise ValueError("the number range cannot hold more than 2**32 numbers")
    stream = SeededStream(seed, label)
    limit = _TWO_32 - _TWO_32 % span
    drawn: dict[int, None] = {}
    while len(drawn) < count:
        # A rejected word or a repeated number is skipped without changing the draws after
        # it, so filtering words in bulk and keeping first occurrences (a dict keeps
        # insertion order) is the one-by-one draw of the docstring, word for word.
        missing = count - len(drawn)
        words = stream.next_words(missing + 2 * missing * missing // span + 16)
        if max(words) >= limit:
            words = tuple(filter(limit.__gt__, words))
        fresh = dict.fromkeys(map(mod, words, repeat(span)))
        if drawn:
            drawn.update(fresh)
        else:
            drawn = fresh
    return list(map(add, islice(drawn, count), repeat(low)))


def number_range(total_slots: int) -> tuple[int, int]:
    """Bounds for randomization numbers: a space at least ten times the slots, 6+ digits."""
    if total_slots < 0:
        raise ValueError("total_slots cannot be negative")
    digits = 6
    while 9 * 10 ** (digits - 1) < 10 * total_slots:
        digits += 1
    return 10 ** (digits - 1), 10**digits - 1
