"""The key-encryption key: rotation re-wraps every study key in one transaction and every
record still opens; /ready says not ready when the KEK is missing or wrong; the KEK and the
signing key may come from the environment."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine, select, update
from sqlalchemy.orm import sessionmaker

from app.adapters.api.app import create_app
from app.adapters.cli.keys import rotate_keys
from app.adapters.crypto.envelope import CannotOpen
from app.adapters.crypto.keyring import (
    ACTIVE_FILE,
    SIGNING_FILE,
    Keyring,
    KeySources,
    KeyUnavailable,
    init_keys,
    load_keyring,
    settings_keyring,
)
from app.adapters.crypto.user_secrets import open_user_secret, seal_user_secret
from app.adapters.db.audit import iter_chain
from app.adapters.db.models import StudyKeyRow
from app.adapters.db.models_web import WebUserRow
from app.adapters.studyfiles.codec import read_study_file
from app.bootstrap import Container, bootstrap
from app.domain.access import Principal
from app.domain.roles import Role
from app.services import randomization as rnd
from app.services import supply
from app.services.studies import load_study
from app.settings import Settings
from tests.conftest import FAST_HASHER, STUDIES_DIR, TEST_ACTOR

A, B = "iris-7a", "iris-7b"
EDC = Principal("edc-keys", Role.EDC, frozenset({A, B}))
STRATA = {"shock": "no", "age": "ge65"}

MakeContainer = Callable[..., Container]


@pytest.fixture
def own_keys(tmp_path: Path) -> Path:
    """A keys directory of this test's own (the session's one is shared, never rotated)."""
    path = tmp_path / "keys"
    init_keys(path)
    return path


@pytest.fixture
def make_container(
    database_url: str, engine: Engine, connection: Connection, own_keys: Path
) -> MakeContainer:
    """Containers on the test's rolled-back transaction, each with its own key service
    (a fresh process, as far as keys go), reading `own_keys` unless told otherwise."""
    factory = sessionmaker(
        bind=connection, expire_on_commit=False, join_transaction_mode="create_savepoint"
    )
    settings = Settings(database_url=database_url, keys_dir=own_keys, auth_failure_delay_scale=0)

    def make(load_keys: Callable[[], Keyring] | None = None) -> Container:
        return bootstrap(
            settings,
            engine=engine,
            session_factory=factory,
            load_keys=load_keys,
            hasher=FAST_HASHER,
        )

    return make


@pytest.fixture
def trial(make_container: MakeContainer, monkeypatch: pytest.MonkeyPatch) -> Container:
    """Both studies, their lists, and randomized subjects, under the first KEK."""
    monkeypatch.setattr(supply, "first_visit_servable", lambda *a, **k: True)
    container = make_container()
    for slug, site in ((A, "FR01"), (B, "US01")):
        study, document, sha = read_study_file(STUDIES_DIR / f"{slug}.toml")
        load_study(container.uow(TEST_ACTOR), study, document, sha)
        rnd.generate_list(container.uow(TEST_ACTOR), "keys", slug)
        for i in range(3):
            subject_id = f"{site}-{i}"
            rnd.register_subject(container.uow(TEST_ACTOR), EDC, slug, subject_id, site, STRATA)
            rnd.randomize(container.uow(TEST_ACTOR), EDC, slug, subject_id, None)
    return container


def every_record(container: Container) -> dict[str, Any]:
    """Everything sealed, opened: definitions, seeds, slots and allocations of both studies."""
    opened: dict[str, Any] = {}
    uow = container.uow(TEST_ACTOR)
    with uow:
        for slug in (A, B):
            stored = uow.studies.get(slug)
            assert stored is not None
            info = uow.lists.active(slug, "live")
            assert info is not None
            opened[slug] = {
                "definition": stored.document,
                "seed": uow.lists.seed(info),
                "slots": uow.lists.slots(info),
                "allocations": [
                    (s.subject_id, arm, n) for s, arm, n in uow.lists.allocations(slug, "live")
                ],
            }
    return opened


def key_rows(container: Container) -> list[tuple[int, int, str, bytes]]:
    with container.session_factory() as session:
        rows = session.scalars(select(StudyKeyRow).order_by(StudyKeyRow.id)).all()
        return [(r.study_id, r.version, r.kek_id, r.wrapped_dek) for r in rows]


class TestRotate:
    def test_every_record_still_opens(
        self, trial: Container, make_container: MakeContainer, own_keys: Path
    ) -> None:
        before = every_record(trial)
        old_kid = (own_keys / ACTIVE_FILE).read_text()
        done = rotate_keys(trial)
        assert done.old_kids == (old_kid,)
        assert done.retired == (old_kid,)
        assert done.studies == (A, B)
        assert (own_keys / ACTIVE_FILE).read_text() == done.new_kid
        assert not (own_keys / f"kek-{old_kid}.key").exists()
        assert (own_keys / f"kek-{old_kid}.key.retired").exists()
        assert {kid for _, _, kid, _ in key_rows(trial)} == {done.new_kid}

        fresh = make_container()  # no cached data key: opens through the new KEK only
        assert fresh.keys.keyring().keks.keys() == {done.new_kid}
        assert every_record(fresh) == before
        (own_keys / f"kek-{old_kid}.key.retired").unlink()
        assert every_record(make_container()) == before

    def test_users_second_factors_are_sealed_again(
        self, trial: Container, make_container: MakeContainer, own_keys: Path
    ) -> None:
        keyring = load_keyring(own_keys)
        with trial.session_factory() as session:
            session.add(
                WebUserRow(
                    user_id="u_rotation",
                    email="rotation@example.org",
                    role="auditor",
                    all_studies=False,
                    totp_secret_sealed=seal_user_secret(
                        keyring.active_kek, keyring.active_kid, "u_rotation", "JBSWY3DPEHPK3PXP"
                    ),
                    totp_kek_id=keyring.active_kid,
                    totp_enrolled=True,
                    totp_last_step=0,
                    created_at=datetime.now(UTC),
                )
            )
            session.commit()
        done = rotate_keys(trial)
        assert done.retired == (keyring.active_kid,)
        fresh = make_container()
        with fresh.session_factory() as session:
            row = session.scalars(
                select(WebUserRow).where(WebUserRow.user_id == "u_rotation")
            ).one()
            assert row.totp_kek_id == done.new_kid
            assert row.totp_secret_sealed is not None
            kek = fresh.keys.kek(done.new_kid)
            secret = open_user_secret(kek, done.new_kid, "u_rotation", row.totp_secret_sealed)
        assert secret == "JBSWY3DPEHPK3PXP"
        with trial.session_factory() as session:
            [event] = [e for e in iter_chain(session, "_system") if e.action == "kek.rotated"]
        assert (event.after or {})["user_secrets"] == 1

    def test_audited_in_each_study_and_the_system_chain(self, trial: Container) -> None:
        done = rotate_keys(trial)
        with trial.session_factory() as session:
            for slug in (A, B):
                [event] = [
                    e for e in iter_chain(session, slug) if e.action == "study_key.rewrapped"
                ]
                assert (event.after or {})["kek_id"] == done.new_kid
                assert event.actor_role == "operator"
            [system] = [e for e in iter_chain(session, "_system") if e.action == "kek.rotated"]
        assert (system.after or {})["studies"] == [A, B]

    def test_a_process_started_before_the_rotation_keeps_working(
        self, trial: Container, make_container: MakeContainer
    ) -> None:
        running = make_container()
        running.keys.keyring()  # loaded before the rotation: knows only the old KEK
        before = every_record(trial)
        rotate_keys(trial)
        assert every_record(running) == before

    def test_twice(self, trial: Container, make_container: MakeContainer, own_keys: Path) -> None:
        before = every_record(trial)
        first = rotate_keys(trial)
        second = rotate_keys(trial)
        assert second.old_kids == (first.new_kid,)
        assert len(list(own_keys.glob("kek-*.key.retired"))) == 2
        assert every_record(make_container()) == before

    def test_a_process_started_before_wraps_new_studies_under_the_new_key(
        self, make_container: MakeContainer
    ) -> None:
        container = make_container()
        study, document, sha = read_study_file(STUDIES_DIR / f"{A}.toml")
        load_study(container.uow(TEST_ACTOR), study, document, sha)
        running = make_container()
        running.keys.keyring()
        done = rotate_keys(container)
        study, document, sha = read_study_file(STUDIES_DIR / f"{B}.toml")
        load_study(running.uow(TEST_ACTOR), study, document, sha)
        assert {kid for _, _, kid, _ in key_rows(container)} == {done.new_kid}
        assert len(key_rows(container)) == 2


class TestRotationIsAllOrNothing:
    def test_a_key_that_does_not_open_changes_nothing(
        self, trial: Container, own_keys: Path
    ) -> None:
        with trial.session_factory() as session:
            b_id = session.scalar(
                select(StudyKeyRow.study_id).order_by(StudyKeyRow.study_id.desc()).limit(1)
            )
            session.execute(
                update(StudyKeyRow)
                .where(StudyKeyRow.study_id == b_id)
                .values(wrapped_dek=secrets.token_bytes(60))
            )
            session.commit()
        rows = key_rows(trial)
        files = sorted(p.name for p in own_keys.iterdir())
        active = (own_keys / ACTIVE_FILE).read_text()
        with pytest.raises(CannotOpen):
            rotate_keys(trial)
        assert key_rows(trial) == rows
        assert sorted(p.name for p in own_keys.iterdir()) == files
        assert (own_keys / ACTIVE_FILE).read_text() == active
        with trial.session_factory() as session:
            actions = {e.action for e in iter_chain(session, "_system")}
        assert "kek.rotated" not in actions

    def test_refused_when_the_kek_comes_from_the_environment(
        self, make_container: MakeContainer, own_keys: Path
    ) -> None:
        keyring = load_keyring(own_keys)
        env = KeySources(
            kek_b64=base64.b64encode(keyring.active_kek).decode(), kek_id=keyring.active_kid
        )
        container = make_container(load_keys=lambda: load_keyring(own_keys, env))
        with pytest.raises(KeyUnavailable, match="IWRS_KEK"):
            rotate_keys(container)
        assert [p.name for p in own_keys.glob("kek-*.key")] == [f"kek-{keyring.active_kid}.key"]


class TestReadiness:
    def _ready(self, container: Container) -> Any:
        with TestClient(create_app(container), raise_server_exceptions=False) as client:
            return client.get("/ready")

    def test_ready_with_the_right_key(self, trial: Container) -> None:
        response = self._ready(trial)
        assert response.status_code == 200, response.text

    def test_a_wrong_kek_is_not_ready(
        self, trial: Container, make_container: MakeContainer, own_keys: Path
    ) -> None:
        right = load_keyring(own_keys)
        wrong = Keyring(
            active_kid=right.active_kid,
            keks={right.active_kid: secrets.token_bytes(32)},
            signing_key=right.signing_key,
        )
        response = self._ready(make_container(load_keys=lambda: wrong))
        assert response.status_code == 503
        body = response.json()
        assert body["code"] == "not_ready"
        assert body["checks"]["key"].startswith("unavailable")
        assert right.active_kid not in response.text

    def test_a_kek_that_no_study_names_is_not_ready(
        self, trial: Container, make_container: MakeContainer, own_keys: Path
    ) -> None:
        right = load_keyring(own_keys)
        other = Keyring(
            active_kid="other",
            keks={"other": secrets.token_bytes(32)},
            signing_key=right.signing_key,
        )
        response = self._ready(make_container(load_keys=lambda: other))
        assert response.status_code == 503
        assert response.json()["checks"]["key"].startswith("unavailable")

    def test_after_a_rotation_ready_again(
        self, trial: Container, make_container: MakeContainer
    ) -> None:
        rotate_keys(trial)
        assert self._ready(make_container()).status_code == 200


def _pem(path: Path) -> str:
    return (path / SIGNING_FILE).read_text()


class TestKeysFromTheEnvironment:
    def test_kek_and_signing_key(self, own_keys: Path, tmp_path: Path) -> None:
        files = load_keyring(own_keys)
        kek = base64.b64encode(files.active_kek).decode()
        env = KeySources(kek_b64=kek, kek_id=files.active_kid, signing_pem=_pem(own_keys))
        keyring = load_keyring(tmp_path / "absent", env)
        assert keyring.source == "environment"
        assert keyring.keks == {files.active_kid: files.active_kek}
        assert keyring.signing_key.public_key() == files.signing_key.public_key()
        assert kek not in repr(env)

    def test_signing_key_with_escaped_newlines(self, own_keys: Path, tmp_path: Path) -> None:
        one_line = _pem(own_keys).replace("\n", "\\n")
        files = load_keyring(own_keys)
        env = KeySources(
            kek_b64=base64.b64encode(files.active_kek).decode(),
            kek_id="container-1",
            signing_pem=one_line,
        )
        assert load_keyring(tmp_path, env).active_kid == "container-1"

    def test_signing_key_from_the_directory_when_not_given(self, own_keys: Path) -> None:
        env = KeySources(kek_b64=base64.b64encode(bytes(32)).decode(), kek_id="k1")
        assert load_keyring(own_keys, env).keks == {"k1": bytes(32)}

    @pytest.mark.parametrize(
        ("kek", "kid", "message"),
        [
            ("QUJD", None, "set together"),
            (None, "k1", "set together"),
            ("not base64!", "k1", "not base64"),
            (base64.b64encode(bytes(16)).decode(), "k1", "256-bit"),
            (base64.b64encode(bytes(32)).decode(), "bad kid/..", "IWRS_KEK_ID"),
        ],
    )
    def test_refused_with_a_message_that_holds_no_key(
        self, own_keys: Path, kek: str | None, kid: str | None, message: str
    ) -> None:
        with pytest.raises(KeyUnavailable, match=message) as caught:
            load_keyring(own_keys, KeySources(kek_b64=kek, kek_id=kid))
        assert kek is None or kek not in str(caught.value)

    def test_bad_signing_key(self, own_keys: Path) -> None:
        secret_pem = "-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n"
        with pytest.raises(KeyUnavailable, match="IWRS_TOKEN_SIGNING_KEY") as caught:
            load_keyring(own_keys, KeySources(signing_pem=secret_pem))
        assert "c2VjcmV0" not in str(caught.value)

    def test_settings_read_the_environment_and_hide_the_key(
        self, own_keys: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        files = load_keyring(own_keys)
        kek = base64.b64encode(files.active_kek).decode()
        monkeypatch.setenv("IWRS_KEK", kek)
        monkeypatch.setenv("IWRS_KEK_ID", files.active_kid)
        monkeypatch.setenv("IWRS_TOKEN_SIGNING_KEY", _pem(own_keys))
        settings = Settings(keys_dir=own_keys.parent / "nowhere")
        assert kek not in repr(settings)
        assert "PRIVATE KEY" not in repr(settings)
        keyring = settings_keyring(settings)
        assert (keyring.source, keyring.active_kid) == ("environment", files.active_kid)

    def test_a_container_opens_the_studies_with_the_environment_key(
        self, trial: Container, make_container: MakeContainer, own_keys: Path, tmp_path: Path
    ) -> None:
        before = every_record(trial)
        files = load_keyring(own_keys)
        env = KeySources(
            kek_b64=base64.b64encode(files.active_kek).decode(),
            kek_id=files.active_kid,
            signing_pem=_pem(own_keys),
        )
        container = make_container(load_keys=lambda: load_keyring(tmp_path / "absent", env))
        assert every_record(container) == before
