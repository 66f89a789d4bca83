"""Statistical QC of randomization lists, and their regeneration from the seed.

For each stratum's list (slots in sequence order) and the allocation ratio r (arm -> weight):

- counts: slots per arm, over the list and over each block (a block is the slots sharing a
  block number). A block is balanced when it has `block_size` slots, every arm is of the
  ratio, and count[arm] * sum(r) == r[arm] * block_size for every arm of the ratio.
- block-size use: block size -> number of blocks of that size.
- maximum imbalance: over every prefix of the list (the empty one included), the largest
  value of max_a(count_a / r_a) - min_a(count_a / r_a), arms of the ratio. Ratio-normalised,
  so a 2:1 list that has allocated A, A, B is balanced (0).
- predictability, under the convergence strategy (Blackwell & Hodges 1957; the "CS" guessing
  strategy of randomizeR's expected number of correct guesses): before each allocation the
  guesser, who knows every earlier allocation in the stratum, guesses the arms most behind,
  those with the smallest count_a / r_a so far; among t tied arms the guess is one of them at
  random, so the expected credit is 1/t when the allocated arm is among them and 0 otherwise.
  Expected correct guesses = the sum of credits; predictability = that sum / list length
  (1/number of arms is what a fair coin achieves with equal allocation).

Ties and imbalances are computed exactly: counts are scaled by lcm(r) / r_a, which are
integers, so no floating-point rounding can split or merge a tie.

`regenerate_and_compare` regenerates each stored stratum from the seed with
`generate_lists(seed, study_slug, mode, [stratum], ratio, block_sizes, len(stored))` and
names the strata whose stored list (taken in sequence order) differs from the regenerated
one in any slot (sequence, block, block size, arm) or in length.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from app.domain.randomization import Mode, Slot, generate_lists


@dataclass(frozen=True, slots=True)
class BlockQC:
    block: int
    block_size: int  # as declared by the slots
    length: int  # slots found with this block number
    counts: dict[str, int]  # every arm of the ratio, zero included
    balanced: bool


@dataclass(frozen=True, slots=True)
class StratumQC:
    stratum: str
    length: int
    counts: dict[str, int]
    blocks: tuple[BlockQC, ...]
    block_sizes_used: dict[int, int]  # block size -> number of blocks
    max_imbalance: float  # over every prefix, ratio-normalised
    expected_correct_guesses: float  # convergence strategy
    predictability: float  # expected_correct_guesses / length (0 for an empty list)

    @property
    def all_blocks_balanced(self) -> bool:
        return all(block.balanced for block in self.blocks)


@dataclass(frozen=True, slots=True)
class ListQC:
    strata: tuple[StratumQC, ...]  # by stratum key
    length: int
    counts: dict[str, int]
    block_sizes_used: dict[int, int]
    unbalanced_blocks: int
    max_imbalance: float  # the largest of the strata
    expected_correct_guesses: float
    predictability: float  # over all slots of all strata


def _arms(ratio: Mapping[str, int]) -> list[str]:
    if not ratio or any(weight < 1 for weight in ratio.values()):
        raise ValueError("the ratio needs arms with positive integer weights")
    return sorted(ratio)


def _stratum_qc(stratum: str, slots: Sequence[Slot], ratio: Mapping[str, int]) -> StratumQC:
    arms = _arms(ratio)
    ratio_sum = sum(ratio.values())
    common = math.lcm(*ratio.values())
    scale = {arm: common // ratio[arm] for arm in arms}
    ordered = sorted(slots, key=lambda slot: slot.sequence)
    for slot in ordered:
        if slot.arm not in ratio:
            raise ValueError(f"stratum {stratum!r}, sequence {slot.sequence}: arm not in ratio")

    scaled = dict.fromkeys(arms, 0)  # count_a * lcm / r_a
    max_spread = 0
    credit = 0.0
    for slot in ordered:
        lowest = min(scaled.values())
        behind = [arm for arm in arms if scaled[arm] == lowest]
        if slot.arm in behind:
            credit += 1 / len(behind)
        scaled[slot.arm] += scale[slot.arm]
        max_spread = max(max_spread, max(scaled.values()) - min(scaled.values()))

    by_block: dict[int, list[Slot]] = {}
    for slot in ordered:
        by_block.setdefault(slot.block, []).append(slot)
    blocks = []
    for number, members in sorted(by_block.items()):
        declared = members[0].block_size
        found = Counter(slot.arm for slot in members)
        counts = {arm: found[arm] for arm in arms}
        balanced = (
            all(slot.block_size == declared for slot in members)
            and len(members) == declared
            and all(counts[arm] * ratio_sum == ratio[arm] * declared for arm in arms)
        )
        blocks.append(BlockQC(number, declared, len(members), counts, balanced))

    totals = Counter(slot.arm for slot in ordered)
    return StratumQC(
        stratum=stratum,
        length=len(ordered),
        counts={arm: totals[arm] for arm in arms},
        blocks=tuple(blocks),
        block_sizes_used=dict(sorted(Counter(b.block_size for b in blocks).items())),
        max_imbalance=max_spread / common,
        expected_correct_guesses=credit,
        predictability=credit / len(ordered) if ordered else 0.0,
    )


def qc_report(lists: Mapping[str, Sequence[Slot]], ratio: Mapping[str, int]) -> ListQC:
    """QC of every stratum's list and of the whole, as the module docstring defines it."""
    arms = _arms(ratio)
    strata = tuple(_stratum_qc(key, lists[key], ratio) for key in sorted(lists))
    length = sum(s.length for s in strata)
    counts = {arm: sum(s.counts[arm] for s in strata) for arm in arms}
    sizes: Counter[int] = Counter()
    for s in strata:
        sizes.update(s.block_sizes_used)
    guesses = sum(s.expected_correct_guesses for s in strata)
    return ListQC(
        strata=strata,
        length=length,
        counts=counts,
        block_sizes_used=dict(sorted(sizes.items())),
        unbalanced_blocks=sum(not b.balanced for s in strata for b in s.blocks),
        max_imbalance=max((s.max_imbalance for s in strata), default=0.0),
        expected_correct_guesses=guesses,
        predictability=guesses / length if length else 0.0,
    )


def regenerate_and_compare(
    seed: bytes,
    study_slug: str,
    mode: Mode,
    stored: Mapping[str, Sequence[Slot]],
    ratio: Mapping[str, int],
    block_sizes: Sequence[int],
) -> list[str]:
    """The strata (sorted) whose stored list is not what the seed regenerates."""
    differing = []
    for stratum in sorted(stored):
        kept = sorted(stored[stratum], key=lambda slot: slot.sequence)
        regenerated = generate_lists(
            seed, study_slug, mode, [stratum], ratio, block_sizes, len(kept)
        )[stratum]
        if regenerated != kept:
            differing.append(stratum)
    return differing
