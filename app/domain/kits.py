"""Kits: masked kit numbers with a Damm check digit, type assignment, statuses and lots.

Kit number: KIT_BODY_DIGITS random decimal digits (uniform over 0..10**7-1 from `secrets`,
zero-padded), then one Damm check digit. The Damm digit of a body is the interim value after
folding the body through the table below (row = interim, column = digit, start 0); a whole
number is valid when folding all of it ends at 0. Because the table is a weakly totally
anti-symmetric quasigroup, every single-digit substitution and every adjacent transposition
makes a valid number invalid, so a mistyped number is rejected, never matched to another kit.

Types: `assign_kit_types` lays out the multiset of kit types (types in sorted order, each
repeated by its count), shuffles it with Fisher-Yates (for i = n-1 down to 1, swap i with
rng.randbelow(i + 1)) and pairs it with the numbers in their given order, so the numbers
show no pattern by type.

Lots: `plan_lots` makes blinded lots, each holding kits of every type, so that neither a
lot code nor an expiry date tells a type, nor two kits of one lot that they are of one
type (see its docstring).

Statuses: `ALLOWED_TRANSITIONS` is the whole life cycle; anything else is refused.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from enum import StrEnum
from types import MappingProxyType
from typing import Protocol, TypeVar

from app.domain.errors import Conflict, DomainError

KIT_BODY_DIGITS = 7
KIT_NUMBER_DIGITS = KIT_BODY_DIGITS + 1
_BODY_SPACE = 10**KIT_BODY_DIGITS

_T = TypeVar("_T")


class RandomSource(Protocol):
    """Where random choices come from: `secrets` itself, `SecretsRandom()`, or a test fake."""

    def randbelow(self, n: int, /) -> int:
        """A uniform integer in [0, n)."""
        ...


class SecretsRandom:
    """A `RandomSource` drawing from the operating system's CSPRNG (`secrets`).

    Bytes are fetched in growing batches (a kit list draws hundreds of thousands of
    numbers; one system call each would dominate) and turned into uniform integers by
    rejection sampling on 64-bit words, so no value is more likely than another."""

    _MAX_BATCH = 1 << 16

    def __init__(self) -> None:
        self._buffer = memoryview(b"")
        self._batch = 64

    def _word(self) -> int:
        if len(self._buffer) < 8:
            self._buffer = memoryview(secrets.token_bytes(self._batch))
            self._batch = min(self._batch * 2, self._MAX_BATCH)
        word = int.from_bytes(self._buffer[:8], "big")
        self._buffer = self._buffer[8:]
        return word

    def randbelow(self, n: int, /) -> int:
        if n <= 0:
            raise ValueError("n must be positive")
        if n > 1 << 64:
            return secrets.randbelow(n)
        limit = ((1 << 64) // n) * n
        while True:
            word = self._word()
            if word < limit:
                return word % n


class InvalidKitNumber(DomainError):
    """The text is not a kit number: wrong length, not digits, or a wrong check digit."""

    code = "invalid_kit_number"


class InvalidKitTransition(Conflict):
    """The kit cannot move from its current status to the requested one."""

    code = "invalid_kit_transition"


_DAMM = (
    (0, 3, 1, 7, 5, 9, 8, 6, 4, 2),
    (7, 0, 9, 2, 1, 5, 4, 8, 6, 3),
    (4, 2, 0, 6, 8, 7, 1, 3, 5, 9),
    (1, 7, 5, 0, 9, 8, 3, 4, 2, 6),
    (6, 1, 2, 3, 0, 4, 5, 9, 7, 8),
    (3, 6, 7, 4, 2, 0, 9, 5, 8, 1),
    (5, 8, 6, 9, 7, 2, 0, 1, 3, 4),
    (8, 9, 4, 5, 3, 6, 2, 0, 1, 7),
    (9, 4, 3, 8, 6, 1, 7, 2, 0, 5),
    (2, 5, 8, 1, 4, 3, 6, 7, 9, 0),
)
_DIGITS = re.compile(r"[0-9]+")
_SEPARATORS = re.compile(r"[ \-]")


def _damm_interim(digits: str) -> int:
    if not _DIGITS.fullmatch(digits):
        raise ValueError("Damm digits must be ASCII decimal digits")
    interim = 0
    for char in digits:
        interim = _DAMM[interim][ord(char) - 48]
    return interim


def damm_check_digit(digits: str) -> str:
    """The Damm check digit to append to `digits`."""
    return str(_damm_interim(digits))


def damm_valid(number: str) -> bool:
    """Whether `number` (body then check digit) passes the Damm check."""
    return bool(_DIGITS.fullmatch(number)) and _damm_interim(number) == 0


@dataclass(frozen=True, slots=True)
class KitNumber:
    """A well-formed kit number; `str()` is its canonical form, KIT_NUMBER_DIGITS digits."""

    value: str

    def __post_init__(self) -> None:
        if len(self.value) != KIT_NUMBER_DIGITS or not damm_valid(self.value):
            raise InvalidKitNumber(f"{self.value[:40]!r} is not a valid kit number")

    @classmethod
    def parse(cls, text: str) -> KitNumber:
        """Read a typed number: digits, optionally grouped by spaces or dashes."""
        compact = _SEPARATORS.sub("", text.strip())
        if len(compact) != KIT_NUMBER_DIGITS or not _DIGITS.fullmatch(compact):
            raise InvalidKitNumber(
                f"{text[:40]!r} is not a kit number of {KIT_NUMBER_DIGITS} digits"
            )
        if not damm_valid(compact):
            raise InvalidKitNumber(f"{text[:40]!r} has a wrong check digit")
        return cls(compact)

    @property
    def body(self) -> str:
        return self.value[:KIT_BODY_DIGITS]

    def __str__(self) -> str:
        return self.value


def generate_kit_numbers(
    count: int, existing: Collection[str] = (), rng: RandomSource = secrets
) -> list[str]:
    """`count` distinct new kit numbers, none in `existing` (canonical numbers)."""
    if count < 0:
        raise ValueError("count cannot be negative")
    taken = set(existing)
    if count > _BODY_SPACE - len(taken):
        raise ValueError("not enough kit numbers left in the number space")
    numbers: list[str] = []
    while len(numbers) < count:
        body = f"{rng.randbelow(_BODY_SPACE):0{KIT_BODY_DIGITS}d}"
        number = body + damm_check_digit(body)
        if number not in taken:
            taken.add(number)
            numbers.append(number)
    return numbers


def shuffled(items: Sequence[_T], rng: RandomSource) -> list[_T]:
    """A Fisher-Yates shuffle of `items` (a new list) driven by `rng`."""
    result = list(items)
    for i in range(len(result) - 1, 0, -1):
        j = rng.randbelow(i + 1)
        result[i], result[j] = result[j], result[i]
    return result


def assign_kit_types(
    numbers: Sequence[str], counts_by_type: Mapping[str, int], rng: RandomSource
) -> list[tuple[str, str]]:
    """Pair each number with a kit type: one random permutation of the multiset of types."""
    if any(count < 0 for count in counts_by_type.values()):
        raise ValueError("kit counts cannot be negative")
    if sum(counts_by_type.values()) != len(numbers):
        raise ValueError("the kit counts by type must add up to the number of kit numbers")
    if len(set(numbers)) != len(numbers):
        raise ValueError("kit numbers must be distinct")
    types = [
        kit_type for kit_type in sorted(counts_by_type) for _ in range(counts_by_type[kit_type])
    ]
    return list(zip(numbers, shuffled(types, rng), strict=True))


class KitStatus(StrEnum):
    AT_DEPOT = "at_depot"
    IN_TRANSIT = "in_transit"
    AT_SITE = "at_site"
    DISPENSED = "dispensed"
    DAMAGED = "damaged"
    LOST = "lost"
    QUARANTINED = "quarantined"
    EXPIRED = "expired"
    RETURNED = "returned"
    DESTROYED = "destroyed"


_S = KitStatus
ALLOWED_TRANSITIONS: Mapping[KitStatus, frozenset[KitStatus]] = MappingProxyType(
    {
        _S.AT_DEPOT: frozenset(
            {_S.IN_TRANSIT, _S.QUARANTINED, _S.EXPIRED, _S.DESTROYED, _S.DAMAGED, _S.LOST}
        ),
        _S.IN_TRANSIT: frozenset({_S.AT_SITE, _S.DAMAGED, _S.LOST, _S.QUARANTINED}),
        _S.AT_SITE: frozenset(
            {_S.DISPENSED, _S.DAMAGED, _S.LOST, _S.QUARANTINED, _S.EXPIRED, _S.RETURNED}
        ),
        # Released back where it was (`release_status`), or rejected.
        _S.QUARANTINED: frozenset({_S.AT_SITE, _S.AT_DEPOT, _S.DESTROYED, _S.RETURNED}),
        _S.DISPENSED: frozenset({_S.RETURNED}),
        _S.DAMAGED: frozenset({_S.DESTROYED}),
        _S.LOST: frozenset({_S.DESTROYED}),
        _S.EXPIRED: frozenset({_S.DESTROYED}),
        _S.RETURNED: frozenset({_S.DESTROYED}),
        _S.DESTROYED: frozenset(),
    }
)


def release_status(quarantined_from: KitStatus) -> KitStatus:
    """Where a kit released from quarantine goes: a kit held in transit was at its site."""
    return KitStatus.AT_DEPOT if quarantined_from is KitStatus.AT_DEPOT else KitStatus.AT_SITE


def check_transition(
    kit_number: str,
    current: KitStatus,
    new: KitStatus,
    *,
    quarantined_from: KitStatus | None = None,
) -> None:
    """Refuse a status change outside `ALLOWED_TRANSITIONS`.

    When `quarantined_from` is given, a release from quarantine must also go back where the
    kit was (`release_status`), so a depot kit cannot be released straight onto a site.
    """
    allowed = new in ALLOWED_TRANSITIONS[current]
    if (
        allowed
        and current is KitStatus.QUARANTINED
        and quarantined_from is not None
        and new in (KitStatus.AT_SITE, KitStatus.AT_DEPOT)
    ):
        allowed = new is release_status(quarantined_from)
    if not allowed:
        raise InvalidKitTransition(f"kit {kit_number} cannot go from {current} to {new}")


@dataclass(frozen=True, slots=True)
class Lot:
    code: str
    expiry_date: date


@dataclass(frozen=True, slots=True)
class PlannedLot:
    lot: Lot
    kit_type: str
    kit_count: int


def plan_lots(
    kit_count_by_type: Mapping[str, int],
    kits_per_lot: int,
    first_expiry: date,
    shelf_life_days: int,
) -> list[PlannedLot]:
    """Split the kits into blinded lots, each holding kits of every type.

    There are n = max over types of ceil(count / kits_per_lot) lots; lot r (from 0) holds
    about a n-th of every type's kits (a type's shares differ by at most one, none above
    `kits_per_lot`) and expires on first_expiry + r * shelf_life_days (each lot is a
    packaging campaign one shelf life after the previous, so a long study stays in date).
    Codes L0001, L0002... follow the expiry dates. One entry is returned per lot and type.

    A lot code is on every kit a blinded pharmacist handles and in every dispensing answer.
    Were lots one type each, two subjects given kits of one lot would be known to be on the
    same treatment, and unblinding one subject would unblind every subject of its lots; a
    lot of every type says nothing about the type of any of its kits (except that a type
    with fewer kits than lots is missing from the last ones: there is nothing to put in).
    """
    if kits_per_lot < 1:
        raise ValueError("kits_per_lot must be positive")
    if shelf_life_days < 1:
        raise ValueError("shelf_life_days must be positive")
    if any(count < 0 for count in kit_count_by_type.values()):
        raise ValueError("kit counts cannot be negative")
    types = sorted(t for t, count in kit_count_by_type.items() if count > 0)
    rounds = max((-(-kit_count_by_type[t] // kits_per_lot) for t in types), default=0)
    planned: list[PlannedLot] = []
    for r in range(rounds):
        lot = Lot(f"L{r + 1:04d}", first_expiry + timedelta(days=r * shelf_life_days))
        for kit_type in types:
            base, extra = divmod(kit_count_by_type[kit_type], rounds)
            size = base + int(r < extra)
            if size:
                planned.append(PlannedLot(lot, kit_type, size))
    return planned
