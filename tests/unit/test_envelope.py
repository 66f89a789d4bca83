"""Envelope encryption: a sealed secret opens only on its own study, kind and record."""

from __future__ import annotations

import pytest

from app.adapters.crypto.envelope import (
    CannotOpen,
    StudyCipher,
    new_dek,
    unwrap_dek,
    wrap_dek,
)
from app.domain.sealed import ENVELOPE_TAG, Sealed

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
        sealed = cipher.seal("slot", "42", SECRET)

        assert cipher.open("slot", "42", sealed) == SECRET

    def test_envelope_is_versioned_and_hides_the_plaintext(self, cipher: StudyCipher) -> None:
        first = cipher.seal("slot", "42", SECRET)
        second = cipher.seal("slot", "42", SECRET)

        assert first.envelope.startswith(ENVELOPE_TAG + (1).to_bytes(2, "big"))
        assert SECRET not in first.envelope
        assert first.envelope != second.envelope  # a fresh nonce each time

    @pytest.mark.parametrize(
        ("kind", "record_id"),
        [("slot", "43"), ("kit", "42")],
        ids=["other-record", "other-kind"],
    )
    def test_copied_onto_another_record_does_not_open(
        self, cipher: StudyCipher, kind: str, record_id: str
    ) -> None:
        sealed = cipher.seal("slot", "42", SECRET)

        with pytest.raises(CannotOpen):
            cipher.open(kind, record_id, sealed)

    def test_copied_into_another_study_does_not_open(self, cipher: StudyCipher, dek: bytes) -> None:
        sealed = cipher.seal("slot", "42", SECRET)

        with pytest.raises(CannotOpen, match="iris-7b"):
            StudyCipher("iris-7b", 1, dek).open("slot", "42", sealed)

    def test_another_dek_does_not_open(self, cipher: StudyCipher) -> None:
        sealed = cipher.seal("slot", "42", SECRET)

        with pytest.raises(CannotOpen):
            StudyCipher(STUDY, 1, new_dek()).open("slot", "42", sealed)

    @pytest.mark.parametrize(
        "offset",
        [len(ENVELOPE_TAG) + 2, -1],
        ids=["nonce", "tag"],
    )
    def test_tampered_byte_does_not_open(self, cipher: StudyCipher, offset: int) -> None:
        envelope = bytearray(cipher.seal("slot", "42", SECRET).envelope)
        envelope[offset] ^= 0x01

        with pytest.raises(CannotOpen):
            cipher.open("slot", "42", Sealed(bytes(envelope)))

    def test_truncated_envelope_does_not_open(self, cipher: StudyCipher) -> None:
        envelope = cipher.seal("slot", "42", SECRET).envelope

        with pytest.raises(CannotOpen):
            cipher.open("slot", "42", Sealed(envelope[: len(ENVELOPE_TAG) + 2 + 4]))


class TestOpenCached:
    def test_an_envelope_from_its_column_opens_as_open_does(self, cipher: StudyCipher) -> None:
        sealed = cipher.seal("kit", "K1", SECRET)

        assert cipher.open_envelope_cached("kit", "K1", sealed.envelope) == SECRET
        assert cipher.open_envelope_cached("kit", "K1", sealed.envelope) == SECRET  # remembered
        assert cipher.open_cached("kit", "K1", sealed) == SECRET

    def test_remembered_only_for_its_own_record(self, cipher: StudyCipher) -> None:
        sealed = cipher.seal("kit", "K1", SECRET)
        cipher.open_envelope_cached("kit", "K1", sealed.envelope)

        with pytest.raises(CannotOpen):
            cipher.open_envelope_cached("kit", "K2", sealed.envelope)

    @pytest.mark.parametrize("raw", [b"", SECRET], ids=["empty", "plaintext"])
    def test_bytes_that_are_not_an_envelope_are_refused(
        self, cipher: StudyCipher, raw: bytes
    ) -> None:
        with pytest.raises(ValueError, match="never plaintext"):
            cipher.open_envelope_cached("kit", "K1", raw)


class TestSealed:
    @pytest.mark.parametrize("raw", [b"", SECRET], ids=["empty", "plaintext"])
    def test_refuses_bytes_without_the_envelope_tag(self, raw: bytes) -> None:
        with pytest.raises(ValueError, match="never plaintext"):
            Sealed(raw)

    def test_repr_and_str_hide_the_bytes(self, cipher: StudyCipher) -> None:
        sealed = cipher.seal("slot", "42", SECRET)

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
