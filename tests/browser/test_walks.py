"""Walks through the pages in a real browser, as each person would: the investigator
registers and randomizes (keyboard only), the auditor reads the trail and its chain check,
the statistician views the list QC, a blinded user is refused the statistician's page, a
forged form without its CSRF token changes nothing, the pharmacist's kit number is checked
as it is typed, and the French pages are complete."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from app.domain.kits import KitStatus, damm_check_digit
from app.domain.subjects import SubjectStatus
from tests.browser.conftest import STUDY, Live, log_in
from tests.conftest import TEST_ACTOR

pytestmark = pytest.mark.browser

UI = f"/ui/studies/{STUDY}"
# Bare "QW"/"BIW" are left out: the random CSRF tokens in a page's HTML can contain them.
BLIND_LEAKS = re.compile(r"PLACEBO|Placebo|CYT107|KT_IL7|KT_PBO|weekly")


@pytest.fixture
def french(browser: Any, live: Live) -> Iterator[Any]:
    ctx = browser.new_context(base_url=live.base_url, locale="fr-FR")
    yield ctx
    ctx.close()


def test_investigator_registers_and_randomizes_with_the_keyboard(
    context: Any, live: Live, shots: Path
) -> None:
    who = live.people["investigator"]
    page = context.new_page()
    page.goto("/ui/enrol")
    page.screenshot(path=shots / "01-enrol.png", full_page=True)
    page.goto("/ui/login")
    page.screenshot(path=shots / "01-login.png", full_page=True)
    # The e-mail field has the focus; Tab, type, Enter: no mouse. (Typing waits for the
    # focus: the browser may place it a moment after the page has loaded.)
    expect(page.get_by_label(re.compile("e-mail", re.IGNORECASE))).to_be_focused()
    page.keyboard.type(who.email)
    page.keyboard.press("Tab")
    page.keyboard.type(who.password)
    page.keyboard.press("Enter")
    page.wait_for_url("**/ui/login/code**")
    expect(page.get_by_label(re.compile("6-digit code"))).to_be_focused()
    page.keyboard.type(live.code(who))
    page.keyboard.press("Enter")
    page.wait_for_url("**/ui/")
    page.screenshot(path=shots / "02-investigator-home.png", full_page=True)

    page.get_by_role("link", name="Register a subject").first.click()
    page.get_by_label("Subject ID", exact=True).fill("FR01-101")
    page.get_by_label("Site").select_option("FR01")
    page.get_by_label("Septic shock", exact=True).check()
    page.get_by_label("65 and over").check()
    page.screenshot(path=shots / "03-register.png", full_page=True)
    page.get_by_role("button", name="Register").click()
    page.get_by_text("The subject is registered").wait_for()

    page.get_by_label(re.compile("Weight in kg")).fill("72.5")
    page.get_by_role("button", name="Randomize this subject").click()
    page.get_by_text("The subject is randomized").wait_for()
    number = page.locator("#randomization-number").inner_text()
    assert number.isdigit()
    page.screenshot(path=shots / "04-randomized.png", full_page=True)
    html = page.content()
    assert not BLIND_LEAKS.search(html), "a blinded page names an arm or a kit type"
    kits = page.get_by_role("table", name="Kits handed out, by visit")
    assert "D1" in kits.inner_text()  # the first visit's kits, by number
    page.get_by_role("link", name="Emergency unblinding of this subject").click()
    assert page.get_by_label("Subject ID", exact=True).input_value() == "FR01-101"
    page.screenshot(path=shots / "04-unblinding-form.png", full_page=True)


def test_auditor_reads_the_trail_and_the_chain_check(context: Any, live: Live, shots: Path) -> None:
    page = context.new_page()
    log_in(page, live, live.people["auditor"])
    page.get_by_role("link", name="Audit trail").first.click()
    assert "Intact" in page.locator("#chain-result").inner_text()
    assert page.locator("#audit-table tbody tr").count() > 3
    page.get_by_label("Action").fill("auth.login")
    page.get_by_role("button", name="Filter").click()
    rows = page.locator("#audit-table tbody tr")
    assert rows.count() >= 1
    assert all("auth.login" in t for t in rows.locator("td:nth-child(4)").all_inner_texts())
    page.get_by_role("link", name="Clear").click()
    page.screenshot(path=shots / "05-audit.png", full_page=True)
    assert not BLIND_LEAKS.search(page.content())


def test_statistician_views_the_list_qc(context: Any, live: Live, shots: Path) -> None:
    page = context.new_page()
    log_in(page, live, live.people["statistician"])
    page.get_by_role("link", name="List QC").first.click()
    chart = page.locator("svg.chart")
    chart.wait_for()
    assert chart.locator("rect").count() >= 16 * 3
    assert "identical to the stored list" in page.locator("#qc-seed").inner_text()
    page.screenshot(path=shots / "06-list-qc.png", full_page=True)
    for name in ("Exports", "Lock the study", "Emergency unblinding"):
        page.get_by_role("link", name=name).first.click()
        slug = name.lower().replace(" ", "-")
        page.screenshot(path=shots / f"06-statistician-{slug}.png", full_page=True)


def test_a_blinded_user_is_refused_the_statisticians_page(
    context: Any, live: Live, shots: Path
) -> None:
    page = context.new_page()
    log_in(page, live, live.people["investigator"])
    response = page.goto(f"{UI}/lists/qc")
    assert response is not None
    assert response.status == 403
    assert "This page is not for your role" in page.content()
    assert not BLIND_LEAKS.search(page.content())
    assert page.get_by_role("link", name="List QC").count() == 0
    page.screenshot(path=shots / "07-refused.png", full_page=True)


def test_a_forged_form_without_its_csrf_token_changes_nothing(
    context: Any, live: Live, shots: Path
) -> None:
    page = context.new_page()
    log_in(page, live, live.people["investigator"])
    # A form built in the page (same site, so the cookie goes along) without the token.
    page.evaluate(
        """(action) => {
            const form = document.createElement("form");
            form.method = "post"; form.action = action;
            const fields = {subject_id: "FORGED-1", site: "FR01", stratum_shock: "no",
                            stratum_age: "lt65"};
            for (const [name, value] of Object.entries(fields)) {
                const input = document.createElement("input");
                input.name = name; input.value = value; form.appendChild(input);
            }
            document.body.appendChild(form); form.submit();
        }""",
        f"{UI}/subjects/new",
    )
    page.get_by_text("nothing was done").wait_for()
    page.screenshot(path=shots / "08-csrf-refused.png", full_page=True)
    with live.container.uow(TEST_ACTOR) as uow:
        assert uow.subjects.get(STUDY, "FORGED-1") is None


def test_the_pharmacists_kit_number_is_checked_as_typed(
    context: Any, live: Live, shots: Path
) -> None:
    with live.container.uow(TEST_ACTOR) as uow:
        (shipment,) = uow.supply.shipments(STUDY, site="FR01")
        # A kit still on the shelf: the other walks' randomizations dispense some at random.
        number = next(
            k.kit_number
            for k in uow.supply.kits(STUDY, numbers=shipment.kit_numbers)
            if k.status is KitStatus.AT_SITE
        )
    wrong = number[:7] + str((int(damm_check_digit(number[:7])) + 1) % 10)
    page = context.new_page()
    log_in(page, live, live.people["pharmacist"])
    page.get_by_role("link", name="Look up a kit").first.click()
    field = page.get_by_label(re.compile("Kit number"))
    field.press_sequentially(wrong[:5])
    assert "Keep typing" in page.locator("#kit-check").inner_text()
    field.press_sequentially(wrong[5:])
    assert "typing error" in page.locator("#kit-check").inner_text()
    assert field.get_attribute("aria-invalid") == "true"
    page.screenshot(path=shots / "09-kit-typo.png", full_page=True)
    field.fill("")
    field.press_sequentially(number)
    assert "check digit is right" in page.locator("#kit-check").inner_text()
    page.get_by_role("button", name="Look up").click()
    assert "At the site, usable" in page.locator("#kit-status").inner_text()
    page.screenshot(path=shots / "10-kit.png", full_page=True)
    # The server checks again what the script let through.
    page.goto(f"{UI}/kits?kit_number={wrong}")
    assert "Check the 8 digits" in page.content()
    for name in ("Shipments", "Inventory", "Temperature excursion"):
        page.get_by_role("link", name=name).first.click()
        slug = name.lower().replace(" ", "-")
        page.screenshot(path=shots / f"10-pharmacist-{slug}.png", full_page=True)
    page.get_by_role("link", name="Shipments").first.click()
    page.locator("#shipments-table a").first.click()
    page.screenshot(path=shots / "10-pharmacist-shipment.png", full_page=True)


def test_the_french_pages_are_complete(french: Any, live: Live, shots: Path) -> None:
    who = live.people["investigateur"]
    page = french.new_page()
    page.goto("/ui/login")
    assert page.locator("html").get_attribute("lang") == "fr"
    assert page.get_by_role("button", name="Continuer").count() == 1
    page.get_by_label("Adresse e-mail").fill(who.email)
    page.get_by_label("Mot de passe").fill(who.password)
    page.get_by_role("button", name="Continuer").click()
    page.get_by_label(re.compile("Code à 6 chiffres")).fill(live.code(who))
    page.get_by_role("button", name="Se connecter").click()
    page.wait_for_url("**/ui/")
    page.screenshot(path=shots / "11-fr-accueil.png", full_page=True)
    page.get_by_role("link", name="Inclure un sujet").first.click()
    page.get_by_label("Identifiant du sujet", exact=True).fill("FR01-201")
    page.get_by_label("Sepsis without shock").check()
    page.get_by_label("Under 65").check()
    page.get_by_role("button", name="Inclure").click()
    page.get_by_text("Le sujet est inclus").wait_for()
    page.get_by_role("button", name="Randomiser ce sujet").click()
    page.get_by_text("Le sujet est randomisé").wait_for()
    page.screenshot(path=shots / "12-fr-sujet.png", full_page=True)
    text = page.locator("body").inner_text()
    english = ("Register", "Randomize", "Status", "Subject ID", "Log out", "Times are shown")
    assert not [word for word in english if word in text], text
    assert "Europe/Paris" in text
    with live.container.uow(TEST_ACTOR) as uow:
        subject = uow.subjects.get(STUDY, "FR01-201")
    assert subject is not None
    assert subject.status is SubjectStatus.RANDOMIZED
