"""The keys directory: created once, private, and refused with a message saying what to do."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from app.adapters.crypto.keyring import (
    ACTIVE_FILE,
    KEK_BYTES,
    SIGNING_FILE,
    KeyUnavailable,
    init_keys,
    load_keyring,
)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def keys_dir(tmp_path: Path) -> Path:
    return tmp_path / "keys"


class TestInitKeys:
    def test_then_load(self, keys_dir: Path) -> None:
        kid = init_keys(keys_dir)

        keyring = load_keyring(keys_dir)

        assert keyring.active_kid == kid
        assert list(keyring.keks) == [kid]
        assert len(keyring.active_kek) == KEK_BYTES

    def test_files_are_private(self, keys_dir: Path) -> None:
        kid = init_keys(keys_dir)

        names = sorted(p.name for p in keys_dir.iterdir())

        assert names == sorted([f"kek-{kid}.key", ACTIVE_FILE, SIGNING_FILE])
        assert {mode(keys_dir / name) for name in names} == {0o600}
        assert mode(keys_dir) & 0o077 == 0

    def test_second_init_refuses_to_overwrite(self, keys_dir: Path) -> None:
        init_keys(keys_dir)
        before = {p.name: p.read_bytes() for p in keys_dir.iterdir()}

        with pytest.raises(KeyUnavailable, match="refusing to overwrite"):
            init_keys(keys_dir)
        assert {p.name: p.read_bytes() for p in keys_dir.iterdir()} == before


class TestLoadKeyring:
    def test_empty_dir_says_to_run_keys_init(self, keys_dir: Path) -> None:
        keys_dir.mkdir()

        with pytest.raises(KeyUnavailable, match="run `iwrs keys init`"):
            load_keyring(keys_dir)

    @pytest.mark.parametrize("name", ["kek", SIGNING_FILE])
    def test_file_readable_by_others_is_refused(self, keys_dir: Path, name: str) -> None:
        kid = init_keys(keys_dir)
        path = keys_dir / (f"kek-{kid}.key" if name == "kek" else name)
        path.chmod(0o644)

        with pytest.raises(KeyUnavailable, match="chmod 600") as caught:
            load_keyring(keys_dir)
        assert str(path) in str(caught.value)

    def test_repr_hides_the_keys(self, keys_dir: Path) -> None:
        init_keys(keys_dir)
        keyring = load_keyring(keys_dir)

        assert repr(keyring.active_kek) not in repr(keyring)
