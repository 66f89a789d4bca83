"""Envelope encryption: a sealed secret opens only on its own study, kind and record, and
its envelope's length depends only on its kind and non-secret facts, never on its value."""

from __future__ import annotations

import json
import secrets

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from app.adapters.crypto.envelope import (
    BUCKET,
    CODE_SIZE,
    FIXED_SIZES,
    SEED_SIZE,
    TRACE_SIZE,
    CannotOpen,
    StudyCipher,
    TooLongToSeal,
    new_dek,
    padded_size,
    sealed_length,
    stratum_size,
    unwrap_dek,
    wrap_dek,
)
from app.domain.randomization import SEED_BYTES
from app.domain.sealed import ENVELOPE_TAG, LEGACY_ENVELOPE_TAG, Sealed
from app.domain.study import (
    MAX_BLOCK_SIZE,
    MAX_CODE_BYTES,
    MAX_MINIMIZATION_ARMS,
    MAX_MINIMIZATION_FACTORS,
)

STUDY = "iris-7a"
SECRET = b"CYT107_BIW"


@pytest.fixture
def dek() -> bytes:
    return new_dek()


@pytest.fixture
def cipher(dek: bytes) -> StudyCipher:
    return StudyCipher(STUDY, 1, dek)


class TestSealAndOpen:
    def test_round_trip(self, cipher: StudyCipher) -> None:
        sealed = cipher.seal("allocation", "42", SECRET)

        assert cipher.open("allocation", "42", sealed) == SECRET

    def test_envelope_is_versioned_and_hides_the_plaintext(self, cipher: StudyCipher) -> None:
        first = cipher.seal("allocation", "42", SECRET)
        second = cipher.seal("allocation", "42", SECRET)

        assert first.envelope.startswith(ENVELOPE_TAG + (1).to_bytes(2, "big"))
        assert SECRET not in first.envelope
        assert first.envelope != second.envelope  # a fresh nonce each time

    @pytest.mark.parametrize(
        ("kind", "record_id"),
        [("allocation", "43"), ("kit_type", "42")],
        ids=["other-record", "other-kind"],
    )
    def test_copied_onto_another_record_does_not_open(
        self, cipher: StudyCipher, kind: str, record_id: str
    ) -> None:
        sealed = cipher.seal("allocation", "42", SECRET)

        with pytest.raises(CannotOpen):
            cipher.open(kind, record_id, sealed)

    def test_copied_into_another_study_does_not_open(self, cipher: StudyCipher, dek: bytes) -> None:
        sealed = cipher.seal("allocation", "42", SECRET)

        with pytest.raises(CannotOpen, match="iris-7b"):
            StudyCipher("iris-7b", 1, dek).open("allocation", "42", sealed)

    def test_another_dek_does_not_open(self, cipher: StudyCipher) -> None:
        sealed = cipher.seal("allocation", "42", SECRET)

        with pytest.raises(CannotOpen):
            StudyCipher(STUDY, 1, new_dek()).open("allocation", "42", sealed)

    @pytest.mark.parametrize(
        "offset",
        [len(ENVELOPE_TAG) + 2, -1],
        ids=["nonce", "tag"],
    )
    def test_tampered_byte_does_not_open(self, cipher: StudyCipher, offset: int) -> None:
        envelope = bytearray(cipher.seal("allocation", "42", SECRET).envelope)
        envelope[offset] ^= 0x01

        with pytest.raises(CannotOpen):
            cipher.open("allocation", "42", Sealed(bytes(envelope)))

    def test_truncated_envelope_does_not_open(self, cipher: StudyCipher) -> None:
        envelope = cipher.seal("allocation", "42", SECRET).envelope

        with pytest.raises(CannotOpen):
            cipher.open("allocation", "42", Sealed(envelope[: len(ENVELOPE_TAG) + 2 + 4]))


class TestOpenCached:
    def test_an_envelope_from_its_column_opens_as_open_does(self, cipher: StudyCipher) -> None:
        sealed = cipher.seal("kit_type", "K1", SECRET)

        assert cipher.open_envelope_cached("kit_type", "K1", sealed.envelope) == SECRET
        assert cipher.open_envelope_cached("kit_type", "K1", sealed.envelope) == SECRET  # again
        assert cipher.open_cached("kit_type", "K1", sealed) == SECRET

    def test_remembered_only_for_its_own_record(self, cipher: StudyCipher) -> None:
        sealed = cipher.seal("kit_type", "K1", SECRET)
        cipher.open_envelope_cached("kit_type", "K1", sealed.envelope)

        with pytest.raises(CannotOpen):
            cipher.open_envelope_cached("kit_type", "K2", sealed.envelope)

    @pytest.mark.parametrize("raw", [b"", SECRET], ids=["empty", "plaintext"])
    def test_bytes_that_are_not_an_envelope_are_refused(
        self, cipher: StudyCipher, raw: bytes
    ) -> None:
        with pytest.raises(ValueError, match="never plaintext"):
            cipher.open_envelope_cached("kit_type", "K1", raw)


class TestSealed:
    @pytest.mark.parametrize("raw", [b"", SECRET], ids=["empty", "plaintext"])
    def test_refuses_bytes_without_the_envelope_tag(self, raw: bytes) -> None:
        with pytest.raises(ValueError, match="never plaintext"):
            Sealed(raw)

    def test_repr_and_str_hide_the_bytes(self, cipher: StudyCipher) -> None:
        sealed = cipher.seal("allocation", "42", SECRET)

        for shown in (repr(sealed), str(sealed), f"{sealed}"):
            assert shown == f"Sealed(<{len(sealed.envelope)} bytes>)"
            assert sealed.envelope.hex() not in shown


class TestWrapDek:
    def test_round_trip(self, dek: bytes) -> None:
        kek = new_dek()

        wrapped = wrap_dek(kek, "kid-1", STUDY, dek)

        assert dek not in wrapped
        assert unwrap_dek(kek, "kid-1", STUDY, wrapped) == dek

    @pytest.mark.parametrize(
        ("other_kek", "kid", "study"),
        [(True, "kid-1", STUDY), (False, "kid-1", "iris-7b")],
        ids=["other-kek", "other-study"],
    )
    def test_wrong_kek_kid_or_study_does_not_unwrap(
        self, dek: bytes, other_kek: bool, kid: str, study: str
    ) -> None:
        kek = new_dek()
        wrapped = wrap_dek(kek, "kid-1", STUDY, dek)

        with pytest.raises(CannotOpen, match=kid):
            unwrap_dek(new_dek() if other_kek else kek, kid, study, wrapped)


def legacy_envelope(dek: bytes, study: str, kind: str, record_id: str, value: bytes) -> bytes:
    """An IWRS1 envelope as the code before padding wrote it (the value at its own length)."""
    nonce = secrets.token_bytes(12)
    body = AESGCM(dek).encrypt(nonce, value, f"{study}|{kind}|{record_id}".encode())
    return LEGACY_ENVELOPE_TAG + (1).to_bytes(2, "big") + nonce + body


class TestPadding:
    @pytest.mark.parametrize(
        "value", [b"", b"A", b"PLACEBO", b"CYT107_BIW", b"\x00" * 3, b"X" * CODE_SIZE]
    )
    def test_round_trip_of_any_length_up_to_the_size(
        self, cipher: StudyCipher, value: bytes
    ) -> None:
        sealed = cipher.seal("allocation", "S-001", value)

        assert cipher.open("allocation", "S-001", sealed) == value
        assert len(sealed.envelope) == sealed_length(CODE_SIZE)

    @pytest.mark.parametrize("kind", sorted(FIXED_SIZES))
    def test_every_fixed_kind_has_one_length(self, cipher: StudyCipher, kind: str) -> None:
        lengths = {
            len(cipher.seal(kind, "r", b"x" * n).envelope)
            for n in (0, 1, 7, 10, FIXED_SIZES[kind] // 2, FIXED_SIZES[kind])
        }

        assert lengths == {sealed_length(FIXED_SIZES[kind])}

    def test_the_three_arms_seal_alike(self, cipher: StudyCipher) -> None:
        arms = [b"PLACEBO", b"CYT107_QW", b"CYT107_BIW", b"A", b"BB12", b"CCCCCCCCC"]

        assert len({len(cipher.seal("allocation", "S", arm).envelope) for arm in arms}) == 1

    def test_an_explicit_size_is_kept(self, cipher: StudyCipher) -> None:
        size = stratum_size(10, len("CYT107_BIW"))
        short = cipher.seal("stratum", "1:FR01", b"[]", size=size)
        full = cipher.seal("stratum", "1:FR01", b"x" * size, size=size)

        assert len(short.envelope) == len(full.envelope) == sealed_length(size)
        assert cipher.open("stratum", "1:FR01", short) == b"[]"

    def test_a_definition_is_rounded_up_to_its_bucket(self, cipher: StudyCipher) -> None:
        small = cipher.seal("study_definition", "iris-7a", b"{}")
        larger = cipher.seal("study_definition", "iris-7a", b"x" * 3000)
        next_bucket = cipher.seal("study_definition", "iris-7a", b"x" * BUCKET)

        assert len(small.envelope) == len(larger.envelope) == sealed_length(BUCKET - 4)
        assert len(next_bucket.envelope) == sealed_length(2 * BUCKET - 4)
        assert cipher.open("study_definition", "iris-7a", larger) == b"x" * 3000

    def test_a_kind_without_a_size_rule_is_refused(self, cipher: StudyCipher) -> None:
        with pytest.raises(ValueError, match="no sealed size"):
            cipher.seal("something_new", "1", SECRET)

    @pytest.mark.parametrize(
        ("kind", "size"),
        [("allocation", None), ("kit_type", None), ("trace", None), ("stratum", 100)],
    )
    def test_too_long_is_refused_without_the_value(
        self, cipher: StudyCipher, kind: str, size: int | None
    ) -> None:
        limit = size if size is not None else padded_size(kind, 0)
        value = b"Z" * (limit + 1)

        with pytest.raises(TooLongToSeal, match=f"{limit + 1} bytes exceeds") as raised:
            cipher.seal(kind, "1", value, size=size)
        assert "ZZ" not in str(raised.value)

    def test_the_envelope_hides_the_length_prefix_and_padding(self, cipher: StudyCipher) -> None:
        envelope = cipher.seal("allocation", "S", SECRET).envelope

        assert SECRET not in envelope
        assert bytes(16) not in envelope  # the zero padding is encrypted too


class TestBinding:
    @pytest.mark.parametrize(
        ("kind", "record_id"),
        [("allocation", "S-002"), ("kit_type", "S-001")],
        ids=["other-record", "other-kind"],
    )
    def test_a_padded_envelope_opens_only_on_its_record(
        self, cipher: StudyCipher, kind: str, record_id: str
    ) -> None:
        sealed = cipher.seal("allocation", "S-001", SECRET)

        with pytest.raises(CannotOpen):
            cipher.open(kind, record_id, sealed)

    def test_relabelled_as_legacy_does_not_open(self, cipher: StudyCipher) -> None:
        envelope = cipher.seal("allocation", "S-001", SECRET).envelope
        relabelled = LEGACY_ENVELOPE_TAG + envelope[len(ENVELOPE_TAG) :]

        with pytest.raises(CannotOpen):
            cipher.open("allocation", "S-001", Sealed(relabelled))

    def test_a_legacy_envelope_relabelled_as_padded_does_not_open(
        self, cipher: StudyCipher, dek: bytes
    ) -> None:
        legacy = legacy_envelope(dek, STUDY, "allocation", "S-001", SECRET)

        with pytest.raises(CannotOpen):
            cipher.open("allocation", "S-001", Sealed(ENVELOPE_TAG + legacy[5:]))


class TestLegacy:
    def test_a_legacy_envelope_opens(self, cipher: StudyCipher, dek: bytes) -> None:
        legacy = Sealed(legacy_envelope(dek, STUDY, "allocation", "S-001", SECRET))

        assert legacy.legacy
        assert cipher.open("allocation", "S-001", legacy) == SECRET
        assert cipher.open_envelope_cached("allocation", "S-001", legacy.envelope) == SECRET

    def test_a_legacy_envelope_still_binds_its_record(
        self, cipher: StudyCipher, dek: bytes
    ) -> None:
        legacy = Sealed(legacy_envelope(dek, STUDY, "allocation", "S-001", SECRET))

        with pytest.raises(CannotOpen):
            cipher.open("allocation", "S-002", legacy)

    def test_new_envelopes_are_not_legacy(self, cipher: StudyCipher) -> None:
        assert not cipher.seal("allocation", "S-001", SECRET).legacy


class TestEveryValidStudyFits:
    """The study file's bounds (app.domain.study) keep every value within its sealed size."""

    def test_the_longest_code_fits(self) -> None:
        assert MAX_CODE_BYTES <= CODE_SIZE
        assert SEED_SIZE >= SEED_BYTES

    def test_the_widest_slot_fits_its_share(self, cipher: StudyCipher) -> None:
        arm = "A" * MAX_CODE_BYTES
        slots = [[arm, 9_999_999, MAX_BLOCK_SIZE, 4_294_967_295]] * 50
        raw = json.dumps(slots, separators=(",", ":")).encode()

        assert len(raw) <= stratum_size(50, MAX_CODE_BYTES)
        cipher.seal("stratum", "1:*", raw, size=stratum_size(50, MAX_CODE_BYTES))

    def test_the_largest_minimization_trace_fits(self, cipher: StudyCipher) -> None:
        # As app.services.minimization builds it and the list repository encodes it, with
        # every code at its longest, every count and number at 10 digits and every float at
        # its longest repr.
        arms = [f"A{i:02d}".ljust(MAX_CODE_BYTES, "x") for i in range(MAX_MINIMIZATION_ARMS)]
        factors = [f"F{i:02d}".ljust(MAX_CODE_BYTES, "y") for i in range(MAX_MINIMIZATION_FACTORS)]
        level = "L" * MAX_CODE_BYTES
        longest = -1.2345678901234567e-300
        trace = {
            "sequence": 9_999_999_999,
            "factors": [(f, longest) for f in factors],
            "levels": {f: level for f in factors},
            "counts": {f"{f}={level}": {a: 9_999_999_999 for a in arms} for f in factors},
            "scores": {a: longest for a in arms},
            "probabilities": {a: longest for a in arms},
            "draw": longest,
            "arm": arms[0],
        }
        raw = json.dumps(trace, default=str).encode()

        assert len(raw) <= TRACE_SIZE
        cipher.seal("trace", "S-001", raw)
