"""The pages of each role call the API's use cases and keep its rules: scope, role, blinding."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pyotp
from fastapi.testclient import TestClient

from app.adapters.db.audit import iter_chain
from app.bootstrap import Container
from app.domain.kits import damm_check_digit
from app.domain.roles import Role
from tests.conftest import TEST_ACTOR
from tests.web.conftest import FakeClock, Person, csrf, login

STUDY = "iris-7a"
UI = f"/ui/studies/{STUDY}"
# Anything that would name an arm or a kit type (codes and labels of both studies).
# Arm codes (PLACEBO, CYT107_QW, CYT107_BIW), labels and kit types. Bare "QW"/"BIW" would
# match random CSRF tokens, and every arm code carrying them also carries CYT107.
BLIND_LEAKS = re.compile(r"PLACEBO|Placebo|CYT107|KT_IL7|KT_PBO|once weekly|twice weekly")


def register(web: TestClient, subject_id: str, site: str = "FR01") -> object:
    page = web.get(f"{UI}/subjects/new")
    return web.post(
        f"{UI}/subjects/new",
        data={
            "csrf_token": csrf(page.text),
            "subject_id": subject_id,
            "site": site,
            "stratum_shock": "yes",
            "stratum_age": "lt65",
        },
    )


def randomize(web: TestClient, subject_id: str, weight: str = "") -> object:
    page = web.get(f"{UI}/subjects/{subject_id}")
    return web.post(
        f"{UI}/subjects/{subject_id}/randomization",
        data={"csrf_token": csrf(page.text), "weight_kg": weight},
    )


def trail(container: Container) -> list[tuple[str, str]]:
    with container.uow(TEST_ACTOR) as uow:
        return [(r.action, r.actor_id) for r in iter_chain(uow.session, STUDY)]


class TestInvestigator:
    def test_register_and_randomize_blinded(
        self,
        web: TestClient,
        trial: Container,
        person: Callable[..., Person],
        clock: FakeClock,
    ) -> None:
        investigator = person(Role.INVESTIGATOR)
        login(web, investigator, clock)
        registered = register(web, "FR01-001")
        assert registered.status_code == 200  # type: ignore[attr-defined]
        assert "The subject is registered" in registered.text  # type: ignore[attr-defined]
        result = randomize(web, "FR01-001", "72,5")
        html = result.text  # type: ignore[attr-defined]
        assert result.status_code == 200, html  # type: ignore[attr-defined]
        number = re.search(r'id="randomization-number"[^>]*>(\d+)<', html)
        assert number is not None
        assert "Randomized" in html
        assert not BLIND_LEAKS.search(html)
        # Both changes are the investigator's own, in the audit trail.
        actions = dict(trail(trial))
        assert actions["subject.registered"] == f"user:{investigator.email}"
        assert actions["subject.randomized"] == f"user:{investigator.email}"
        assert actions["dispensation.created"] == f"user:{investigator.email}"
        again = randomize(web, "FR01-001")
        assert again.status_code == 409  # type: ignore[attr-defined]
        assert "randomized only once" in again.text  # type: ignore[attr-defined]

    def test_another_site_is_refused_and_unknown_subjects_are_not_found(
        self,
        web: TestClient,
        trial: Container,
        person: Callable[..., Person],
        clock: FakeClock,
    ) -> None:
        login(web, person(Role.INVESTIGATOR, sites=["FR02"]), clock)
        response = register(web, "FR01-009", site="FR01")
        assert response.status_code == 403  # type: ignore[attr-defined]
        assert "Your role or your sites do not allow this" in response.text  # type: ignore[attr-defined]
        missing = web.get(f"{UI}/subjects/NOPE-1")
        assert missing.status_code == 404
        assert "Check the ID" in missing.text

    def test_a_missing_answer_says_what_to_do(
        self,
        web: TestClient,
        trial: Container,
        person: Callable[..., Person],
        clock: FakeClock,
    ) -> None:
        login(web, person(Role.INVESTIGATOR), clock)
        page = web.get(f"{UI}/subjects/new")
        response = web.post(
            f"{UI}/subjects/new",
            data={
                "csrf_token": csrf(page.text),
                "subject_id": "FR01-002",
                "site": "FR01",
                "stratum_shock": "yes",
            },
        )
        assert response.status_code == 422
        assert "Answer every question" in response.text
        assert 'value="FR01-002"' in response.text  # what was typed is kept

    def test_emergency_unblinding_asks_both_factors_again(
        self,
        web: TestClient,
        trial: Container,
        person: Callable[..., Person],
        clock: FakeClock,
    ) -> None:
        investigator = person(Role.INVESTIGATOR)
        login(web, investigator, clock)
        register(web, "FR01-003")
        randomize(web, "FR01-003")
        subject = web.get(f"{UI}/subjects/FR01-003")
        assert "Emergency unblinding of this subject" in subject.text
        form = web.get(f"{UI}/unblinding?subject_id=FR01-003")
        data = {
            "csrf_token": csrf(form.text),
            "subject_id": "FR01-003",
            "reason": "anaphylaxis",
            "password": "wrong password!",
            "code": investigator.code(clock),
        }
        refused = web.post(f"{UI}/unblinding", data=data)
        assert refused.status_code == 401
        assert not BLIND_LEAKS.search(refused.text)
        shown = web.post(
            f"{UI}/unblinding",
            data={**data, "password": investigator.password, "code": investigator.code(clock)},
        )
        assert shown.status_code == 200, shown.text
        assert re.search(r'id="arm">[^<]+<', shown.text)
        assert shown.headers["cache-control"] == "no-store"
        actions = [a for a, _ in trail(trial)]
        assert "auth.reauthenticated" in actions
        assert "subject.unblinded" in actions


class TestRoles:
    def test_a_blinded_user_cannot_open_the_statisticians_pages(
        self,
        web: TestClient,
        trial: Container,
        person: Callable[..., Person],
        clock: FakeClock,
    ) -> None:
        login(web, person(Role.INVESTIGATOR), clock)
        for path in ("/lists/qc", "/exports", "/exports/randomization-list.csv", "/lock", "/audit"):
            response = web.get(UI + path)
            assert response.status_code == 403, path
            assert "This page is not for your role" in response.text
            assert not BLIND_LEAKS.search(response.text)
        home = web.get("/ui/")
        assert "List QC" not in home.text
        assert "Register a subject" in home.text

    def test_a_foreign_study_is_not_found(
        self,
        web: TestClient,
        trial: Container,
        person: Callable[..., Person],
        clock: FakeClock,
    ) -> None:
        login(web, person(Role.AUDITOR), clock)
        assert web.get("/ui/studies/iris-7b/audit").status_code == 404


class TestAuditor:
    def test_trail_filters_and_chain_check(
        self,
        web: TestClient,
        trial: Container,
        person: Callable[..., Person],
        clock: FakeClock,
    ) -> None:
        login(web, person(Role.AUDITOR), clock)
        page = web.get(f"{UI}/audit")
        assert page.status_code == 200
        assert 'id="chain-result"' in page.text
        assert "Intact" in page.text
        assert "list.generated" in page.text
        assert not BLIND_LEAKS.search(page.text)
        only = web.get(f"{UI}/audit", params={"action": "shipment.received"})
        assert "shipment.received" in only.text
        assert "list.generated</code>" not in only.text
        future = web.get(f"{UI}/audit", params={"since": "2999-01-01T00:00"})
        assert "No event matches these filters" in future.text
        bad = web.get(f"{UI}/audit", params={"since": "yesterday"})
        assert bad.status_code == 422


class TestStatistician:
    def test_qc_page_with_its_chart(
        self,
        web: TestClient,
        trial: Container,
        person: Callable[..., Person],
        clock: FakeClock,
    ) -> None:
        login(web, person(Role.UNBLINDED_STATISTICIAN), clock)
        page = web.get(f"{UI}/lists/qc")
        assert page.status_code == 200, page.text
        assert "<svg" in page.text
        assert 'role="img"' in page.text
        assert "identical to the stored list" in page.text
        assert page.text.count("<rect") >= 16 * 3
        csv = web.get(f"{UI}/exports/randomization-list.csv")
        assert csv.status_code == 200
        assert csv.text.startswith("stratum,sequence,randomization_number")
        assert csv.headers["cache-control"] == "no-store"


class TestPharmacist:
    def test_kit_lookup_and_shipment_receipt(
        self,
        web: TestClient,
        trial: Container,
        person: Callable[..., Person],
        clock: FakeClock,
    ) -> None:
        login(web, person(Role.PHARMACIST, sites=["FR02"]), clock)
        shipments = web.get(f"{UI}/shipments")
        code = re.search(r'/shipments/([^"]+)"', shipments.text)
        assert code is not None
        detail = web.get(f"{UI}/shipments/{code.group(1)}")
        kit_numbers = re.findall(r'name="damaged" value="(\d{8})"', detail.text)
        assert kit_numbers
        received = web.post(
            f"{UI}/shipments/{code.group(1)}/receipt",
            data={"csrf_token": csrf(detail.text), "damaged": kit_numbers[:1]},
        )
        assert "The receipt is confirmed" in received.text
        good = web.get(f"{UI}/kits", params={"kit_number": kit_numbers[1]})
        assert "At the site, usable" in good.text
        broken = web.get(f"{UI}/kits", params={"kit_number": kit_numbers[0]})
        assert "Damaged" in broken.text
        body = kit_numbers[1][:7]
        wrong = (int(damm_check_digit(body)) + 1) % 10
        typo = web.get(f"{UI}/kits", params={"kit_number": f"{body}{wrong}"})
        assert typo.status_code == 422
        assert "Check the 8 digits" in typo.text
        inventory = web.get(f"{UI}/inventory", params={"site": "FR02"})
        assert "Kits at site FR02" in inventory.text
        for html in (shipments.text, detail.text, good.text, inventory.text):
            assert not BLIND_LEAKS.search(html)


class TestLanguages:
    def test_accept_language_and_the_users_setting(
        self,
        web: TestClient,
        trial: Container,
        person: Callable[..., Person],
        clock: FakeClock,
    ) -> None:
        french = web.get("/ui/login", headers={"Accept-Language": "fr-FR,fr;q=0.9,en;q=0.5"})
        assert '<html lang="fr">' in french.text
        assert "Se connecter" in french.text
        english = web.get("/ui/login", headers={"Accept-Language": "de, en;q=0.5"})
        assert '<html lang="en">' in english.text
        login(web, person(Role.INVESTIGATOR, locale="fr"), clock)
        home = web.get("/ui/")
        assert "Inclure un sujet" in home.text
        assert "Register a subject" not in home.text
        assert "Europe/Paris" in web.get(f"{UI}/subjects/new").text

    def test_every_message_has_a_french_translation(self) -> None:
        from babel.messages.extract import extract_from_dir
        from babel.messages.pofile import read_po

        root = Path(__file__).resolve().parents[2]
        method_map = [
            ("app/adapters/web/**.py", "python"),
            ("app/adapters/web/templates/**.html", "jinja2"),
        ]
        found = {
            message
            for _file, _line, message, _comments, _context in extract_from_dir(
                str(root / "app" / "adapters" / "web"),
                method_map=[(p.replace("app/adapters/web/", ""), m) for p, m in method_map],
            )
        }
        assert len(found) > 200
        po = root / "app/adapters/web/locale/fr/LC_MESSAGES/messages.po"
        with po.open("rb") as handle:
            catalog = read_po(handle)
        missing = sorted(
            m
            for m in found
            if isinstance(m, str)
            and not (
                catalog.get(m) and catalog.get(m).string and "fuzzy" not in catalog.get(m).flags
            )
        )
        assert not missing, f"untranslated: {missing}"
        for message in catalog:
            if message.id:
                placeholders = set(re.findall(r"%\(\w+\)s", str(message.id)))
                assert placeholders == set(re.findall(r"%\(\w+\)s", str(message.string))), (
                    message.id
                )


def test_totp_codes_are_standard() -> None:
    """The adapter accepts what any authenticator app shows (RFC 6238 via pyotp)."""
    from datetime import UTC, datetime

    from app.adapters.crypto.totp import Totp

    totp = Totp()
    secret = totp.new_secret()
    now = datetime.now(UTC)
    code = pyotp.TOTP(secret).at(now)
    step = totp.verify(secret, code, now, 0)
    assert step is not None
    assert totp.verify(secret, code, now, step) is None  # used once
    assert totp.provisioning_uri(secret, "a@b.fr").startswith("otpauth://totp/IWRS:")
