"""Web users and sessions: the rules of app.domain.users, and the pages' language choice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.adapters.web.i18n import load_catalogs, negotiate
from app.domain.roles import Role
from app.domain.users import (
    IDLE_TIMEOUT,
    MAX_AGE,
    PENDING_TIMEOUT,
    InvalidUserRequest,
    SessionState,
    WeakPassword,
    WebSession,
    check_password,
    normalize_email,
    second_factor_required,
    throttle_key,
)

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def session(state: SessionState = SessionState.ACTIVE, **changes: object) -> WebSession:
    values: dict[str, object] = {
        "token_hash": "h" * 64,
        "user_id": "u_1",
        "state": state,
        "csrf_token": "c",
        "created_at": T0,
        "last_seen_at": T0,
        **changes,
    }
    return WebSession(**values)  # type: ignore[arg-type]


class TestSessionEnd:
    def test_idle_timeout(self) -> None:
        assert session().end_reason(T0 + IDLE_TIMEOUT) is None
        assert session().end_reason(T0 + IDLE_TIMEOUT + timedelta(seconds=1)) == "idle"

    def test_max_age_even_when_active(self) -> None:
        late = T0 + MAX_AGE + timedelta(seconds=1)
        assert session(last_seen_at=late).end_reason(late) == "age"

    def test_a_pending_login_expires_sooner(self) -> None:
        pending = session(SessionState.SECOND_FACTOR)
        assert pending.end_reason(T0 + PENDING_TIMEOUT + timedelta(seconds=1)) == "pending"

    def test_logout(self) -> None:
        assert session(ended_at=T0).end_reason(T0) == "logout"


class TestRules:
    def test_every_arm_seeing_role_needs_two_factors(self) -> None:
        for role in (Role.UNBLINDED_STATISTICIAN, Role.SAFETY_OFFICER, Role.INVESTIGATOR):
            assert second_factor_required(role)

    def test_email_is_normalized_and_checked(self) -> None:
        assert normalize_email("  Claire.Martin@CHU.example.FR ") == "claire.martin@chu.example.fr"
        with pytest.raises(InvalidUserRequest):
            normalize_email("claire")

    def test_password_rules(self) -> None:
        check_password("une phrase assez longue", "a@b.fr")
        for weak in ("short", "aaaaaaaaaaaaaaaa", "claire@chu.example.fr"):
            with pytest.raises(WeakPassword):
                check_password(weak, "claire@chu.example.fr")

    def test_throttle_keys_never_collide_with_client_ids(self) -> None:
        assert throttle_key("A@B.fr") == "user:a@b.fr"
        assert len(throttle_key("x" * 300 + "@b.fr")) == 64


class TestLanguage:
    @pytest.mark.parametrize(
        ("header", "setting", "expected"),
        [
            ("fr-FR,fr;q=0.9,en;q=0.8", None, "fr"),
            ("en-GB,fr;q=0.5", None, "en"),
            ("de-DE,fr;q=0.3", None, "fr"),
            ("de-DE", None, "en"),
            (None, None, "en"),
            ("fr;q=0, en;q=0.1", None, "en"),
            ("fr-FR", "en", "en"),
            ("en", "fr", "fr"),
            ("fr;q=abc", None, "en"),
        ],
    )
    def test_negotiate(self, header: str | None, setting: str | None, expected: str) -> None:
        assert negotiate(header, setting) == expected

    def test_the_french_catalog_compiles_from_its_po_file(self) -> None:
        catalogs = load_catalogs()
        assert catalogs["fr"].gettext("Log in") == "Se connecter"
        assert catalogs["en"].gettext("Log in") == "Log in"
