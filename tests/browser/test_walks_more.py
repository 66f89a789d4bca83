"""More walks in a real browser: the pharmacist receives a shipment with a damaged kit and
dispenses a visit; the investigator breaks the code in an emergency (password and TOTP asked
again, a wrong code refused); the statistician downloads both exports and locks a study,
after which randomizing is refused; the temperature excursion list and its decision; the
administrator creates (the enrolment code works) and disables a user.

Each walk checks what the pages say and what the database holds afterwards. The lock is put
on iris-7b, which no other walk uses, so the walks of iris-7a run in any order.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyotp
import pytest

from app.adapters.db.audit import iter_chain
from app.domain.access import Principal
from app.domain.kits import KitStatus
from app.domain.roles import Role
from app.domain.subjects import SubjectStatus
from app.services import randomization as rnd
from app.services.studies import get_study
from tests.browser.conftest import STUDY, Live, log_in
from tests.conftest import TEST_ACTOR
from tests.web.conftest import PASSWORD, Person, enrol
from tests.web.test_pages import BLIND_LEAKS

pytestmark = pytest.mark.browser

UI = f"/ui/studies/{STUDY}"
LOCKED = "iris-7b"
STRATA = {"shock": "yes", "age": "lt65"}


@dataclass
class Cast:
    """The people of these walks (enrolled once) and the subjects made for them."""

    pharmacist: Person  # FR02
    investigator: Person  # FR01, for the unblinding
    statistician: Person  # iris-7a and iris-7b
    us_investigator: Person  # iris-7b, US01
    supply_manager: Person
    field_pharmacist: Person  # FR01, reports an excursion
    admin: Person
    unblinding_subject: str = "FR01-301"
    pooled_subject: str = "FR01-302"
    locked_subject: str = "US01-001"


class PastClock:
    """The use cases' clock moved back, to randomize a subject days ago."""

    def __init__(self, days: int) -> None:
        self.days = days

    def now(self) -> datetime:
        return datetime.now(UTC) - timedelta(days=self.days)


@contextmanager
def days_ago(live: Live, days: int) -> Iterator[None]:
    saved = live.container.clock
    live.container.clock = PastClock(days)  # type: ignore[assignment]
    try:
        yield
    finally:
        live.container.clock = saved


def site_role(role: Role, study: str, site: str) -> Principal:
    return Principal("browser-tests", role, frozenset({study}), {study: frozenset({site})})


def randomized(live: Live, study: str, site: str, subject_id: str, weight: str | None) -> None:
    investigator = site_role(Role.INVESTIGATOR, study, site)
    rnd.register_subject(
        live.container.uow(TEST_ACTOR), investigator, study, subject_id, site, STRATA
    )
    rnd.randomize(
        live.container.uow(TEST_ACTOR),
        investigator,
        study,
        subject_id,
        Decimal(weight) if weight else None,
    )


@pytest.fixture(scope="module")
def cast(live: Live) -> Cast:
    c, clock = live.container, live.clock
    people = Cast(
        pharmacist=enrol(c, clock, Role.PHARMACIST, "pui.fr02@chu.example.fr", sites=["FR02"]),
        investigator=enrol(c, clock, Role.INVESTIGATOR, "urgence@chu-limoges.example.fr"),
        statistician=enrol(
            c, clock, Role.UNBLINDED_STATISTICIAN, "pool@cro.example.org", [STUDY, LOCKED]
        ),
        us_investigator=enrol(
            c, clock, Role.INVESTIGATOR, "pi@wustl.example.edu", [LOCKED], ["US01"]
        ),
        supply_manager=enrol(c, clock, Role.SUPPLY_MANAGER, "supply@sponsor.example.org"),
        field_pharmacist=enrol(c, clock, Role.PHARMACIST, "pui.fr01@chu.example.fr"),
        admin=enrol(c, clock, Role.ADMIN, "admin@sponsor.example.org"),
    )
    randomized(live, STUDY, "FR01", people.unblinding_subject, None)
    randomized(live, STUDY, "FR01", people.pooled_subject, None)
    rnd.generate_list(c.uow(TEST_ACTOR), "browser-tests", LOCKED)
    rnd.register_subject(
        c.uow(TEST_ACTOR),
        site_role(Role.INVESTIGATOR, LOCKED, "US01"),
        LOCKED,
        people.locked_subject,
        "US01",
        STRATA,
    )
    return people


def kit_status(live: Live, number: str) -> KitStatus:
    with live.container.uow(TEST_ACTOR) as uow:
        (kit,) = uow.supply.kits(STUDY, numbers=[number])
    return kit.status


def actions(live: Live, study: str = STUDY) -> list[tuple[str, str]]:
    with live.container.uow(TEST_ACTOR) as uow:
        return [(r.action, r.actor_id) for r in iter_chain(uow.session, study)]


def counts(page: Any) -> dict[str, int]:
    rows = page.locator("#inventory-table tbody tr")
    return {
        rows.nth(i).locator("th").inner_text(): int(rows.nth(i).locator("td").inner_text())
        for i in range(rows.count())
    }


def test_the_pharmacist_receives_a_damaged_kit_and_dispenses_a_visit(
    context: Any, live: Live, cast: Cast, shots: Path
) -> None:
    page = context.new_page()
    log_in(page, live, cast.pharmacist)
    page.get_by_role("link", name="Shipments").first.click()
    waiting = page.locator("#shipments-table tbody tr", has_text="To receive")
    assert waiting.count() == 1
    assert waiting.locator("td").nth(1).inner_text() == "FR02"
    waiting.locator("a").click()
    boxes = page.locator("input[name=damaged]")
    numbers = [boxes.nth(i).get_attribute("value") for i in range(boxes.count())]
    assert len(numbers) > 4
    damaged = str(numbers[0])
    page.get_by_label(damaged).check()
    page.screenshot(path=shots / "20-receipt-damaged-kit.png", full_page=True)
    page.get_by_role("button", name="Confirm the receipt of this shipment").click()
    page.get_by_text("The receipt is confirmed").wait_for()
    assert page.locator("#shipment-status").inner_text() == "Received"
    assert kit_status(live, damaged) is KitStatus.DAMAGED
    assert all(kit_status(live, str(n)) is KitStatus.AT_SITE for n in numbers[1:])

    page.get_by_role("link", name="Look up a kit").first.click()
    page.get_by_label(re.compile("Kit number")).fill(damaged)
    page.get_by_role("button", name="Look up").click()
    assert page.locator("#kit-status").inner_text() == "Damaged"
    page.get_by_role("link", name="Inventory").first.click()
    page.get_by_label("Site").select_option("FR02")
    page.get_by_role("button", name="Show").click()
    before = counts(page)
    assert before["Damaged"] == 1
    assert before["At the site, usable"] == len(numbers) - 1

    # An investigator randomized the subject three days ago (D1 handed out then).
    with days_ago(live, 3):
        randomized(live, STUDY, "FR02", "FR02-001", "72")
    page.goto(f"{UI}/subjects/FR02-001")
    assert page.locator("#subject-status").inner_text() == "Randomized"
    dispense = page.get_by_role("region", name="Dispense a visit")
    dispense.get_by_label("Visit", exact=True).select_option("D4")
    dispense.get_by_label("Weight in kg", exact=True).fill("72")
    page.get_by_role("button", name="Dispense the kits of this visit").click()
    page.get_by_text("The kits are recorded as handed out").wait_for()
    row = page.locator("table tbody tr", has_text="D4")
    handed = row.locator("td.kits").inner_text().split(", ")
    assert len(handed) == 2  # 72 kg: two kits a visit
    page.screenshot(path=shots / "21-dispensed-visit.png", full_page=True)
    all_handed = page.locator("td.kits").all_inner_texts()
    assert damaged not in ", ".join(all_handed)
    assert all(kit_status(live, n) is KitStatus.DISPENSED for n in handed)
    assert kit_status(live, damaged) is KitStatus.DAMAGED
    assert ("dispensation.created", f"user:{cast.pharmacist.email}") in actions(live)
    assert not BLIND_LEAKS.search(page.content())

    page.goto(f"{UI}/inventory?site=FR02")
    after = counts(page)
    assert after["Damaged"] == 1
    assert after["Dispensed"] == 4  # D1 and D4
    assert after["At the site, usable"] == before["At the site, usable"] - 4


def test_the_investigator_breaks_the_code_with_both_factors_again(
    context: Any, live: Live, cast: Cast, shots: Path
) -> None:
    who, subject_id = cast.investigator, cast.unblinding_subject
    page = context.new_page()
    log_in(page, live, who)
    page.goto(f"{UI}/subjects/{subject_id}")
    page.get_by_role("link", name="Emergency unblinding of this subject").click()
    assert page.get_by_label("Subject ID", exact=True).input_value() == subject_id
    page.get_by_label(re.compile("Medical reason")).fill("anaphylactic shock, ICU")
    page.get_by_label("Password").fill(who.password)
    good = live.code(who)
    wrong = f"{(int(good) + 1) % 1_000_000:06d}"
    page.get_by_label(re.compile("6-digit code")).fill(wrong)
    page.get_by_role("button", name="Show the treatment").click()
    page.get_by_text("password or code is not right").wait_for()
    assert page.locator("#arm").count() == 0
    assert not BLIND_LEAKS.search(page.content())
    page.screenshot(path=shots / "22-unblinding-wrong-code.png", full_page=True)
    with live.container.uow(TEST_ACTOR) as uow:
        subject = uow.subjects.get(STUDY, subject_id)
        assert subject is not None
        assert not subject.unblinded
        arm = uow.lists.arm_of(subject)
    assert arm is not None
    assert ("subject.unblinded", f"user:{who.email}") not in actions(live)

    # What was typed stays; the password and the code are asked again.
    assert page.get_by_label(re.compile("Medical reason")).input_value()
    assert page.get_by_label("Password").input_value() == ""
    page.get_by_label("Password").fill(who.password)
    page.get_by_label(re.compile("6-digit code")).fill(live.code(who))
    page.get_by_role("button", name="Show the treatment").click()
    page.locator("#arm").wait_for()
    study = get_study(live.container.uow(TEST_ACTOR), STUDY, None).study
    label = next(a.label for a in study.arms if a.code == arm)
    assert page.locator("#arm").inner_text() == label
    page.screenshot(path=shots / "23-unblinded.png", full_page=True)
    with live.container.uow(TEST_ACTOR) as uow:
        subject = uow.subjects.get(STUDY, subject_id)
        assert subject is not None
        assert subject.unblinded
    trail = actions(live)
    assert ("auth.reauthenticated", f"user:{who.email}") in trail
    assert ("subject.unblinded", f"user:{who.email}") in trail
    # Shown to this user only: the subject's page says that the code was broken, not how.
    page.goto(f"{UI}/subjects/{subject_id}")
    assert "this subject's code was broken" in page.content()
    assert label not in page.content()
    assert not BLIND_LEAKS.search(page.content())


def _download(page: Any, click: Any) -> tuple[str, list[dict[str, str]]]:
    with page.expect_download() as info:
        click()
    download = info.value
    text = Path(download.path()).read_text(encoding="utf-8")
    return download.suggested_filename, list(csv.DictReader(io.StringIO(text)))


def test_the_statistician_exports_and_locks_a_study(
    context: Any, browser: Any, live: Live, cast: Cast, shots: Path
) -> None:
    page = context.new_page()
    log_in(page, live, cast.statistician)
    page.goto(f"{UI}/exports")
    page.screenshot(path=shots / "24-exports.png", full_page=True)
    name, rows = _download(page, page.locator("#download-list").click)
    assert name.endswith("-randomization-list.csv")
    with live.container.uow(TEST_ACTOR) as uow:
        subject = uow.subjects.get(STUDY, cast.pooled_subject)
        assert subject is not None
        arm = uow.lists.arm_of(subject)
    assert len(rows) >= 16 * 3
    taken = [r for r in rows if r["subject_id"] == cast.pooled_subject]
    assert len(taken) == 1
    assert taken[0]["arm"] == arm
    assert taken[0]["randomization_number"] == str(subject.randomization_number)

    page.get_by_label(LOCKED).check()
    name, pooled = _download(
        page, page.get_by_role("button", name="Download the pooled allocations (CSV)").click
    )
    assert name == "pooled-allocations.csv"
    mine = [r for r in pooled if r["subject"] == cast.pooled_subject]
    assert len(mine) == 1
    assert mine[0]["study"] == STUDY
    assert mine[0]["arm"] == arm
    trail = actions(live)
    assert ("randomization_list.exported", f"user:{cast.statistician.email}") in trail
    assert ("allocations.pooled_export", f"user:{cast.statistician.email}") in trail

    # The lock: a warning, a box to tick (the form is not sent without it), then for good.
    page.goto(f"/ui/studies/{LOCKED}/lock")
    assert "cannot be undone" in page.content()
    page.get_by_label(re.compile("Reason")).fill("database lock for the primary analysis")
    page.get_by_role("button", name="Lock the study").click()
    assert page.locator("#lock-result").count() == 0
    with live.container.uow(TEST_ACTOR) as uow:
        assert uow.blinding.locked(LOCKED) is None
    page.get_by_label("I understand that the lock cannot be undone.").check()
    page.screenshot(path=shots / "25-lock-confirm.png", full_page=True)
    page.get_by_role("button", name="Lock the study").click()
    page.locator("#lock-result").wait_for()
    assert "The study is locked" in page.locator("#lock-result").inner_text()
    page.screenshot(path=shots / "26-locked.png", full_page=True)
    with live.container.uow(TEST_ACTOR) as uow:
        assert uow.blinding.locked(LOCKED) is not None
    assert any(a == "study.locked" for a, _ in actions(live, LOCKED))

    investigator = browser.new_context(base_url=live.base_url, locale="en-GB")
    try:
        other = investigator.new_page()
        log_in(other, live, cast.us_investigator)
        other.goto(f"/ui/studies/{LOCKED}/subjects/{cast.locked_subject}")
        other.get_by_role("button", name="Randomize this subject").click()
        other.get_by_text("The study is locked").wait_for()
        assert other.locator("#form-error").count() == 1
        other.screenshot(path=shots / "27-randomize-after-lock.png", full_page=True)
        assert not BLIND_LEAKS.search(other.content())
    finally:
        investigator.close()
    with live.container.uow(TEST_ACTOR) as uow:
        locked = uow.subjects.get(LOCKED, cast.locked_subject)
    assert locked is not None
    assert locked.status is SubjectStatus.REGISTERED
    assert locked.randomization_number is None


def test_an_excursion_is_listed_then_resolved_from_the_list(
    context: Any, browser: Any, live: Live, cast: Cast, shots: Path
) -> None:
    with live.container.uow(TEST_ACTOR) as uow:
        usable = uow.supply.kits(STUDY, sites=frozenset({"FR01"}))
    kit = next(k.kit_number for k in usable if k.status is KitStatus.AT_SITE)
    page = context.new_page()
    log_in(page, live, cast.field_pharmacist)
    page.get_by_role("link", name="Temperature excursion").first.click()
    page.get_by_label(re.compile("Kit numbers")).fill(kit)
    page.get_by_label(re.compile("What happened")).fill("fridge at 11 °C for 4 hours")
    page.get_by_role("button", name="Put the kits in quarantine").click()
    message = page.get_by_role("status").inner_text()
    code = re.search(r"EX-[0-9A-F]+", message)
    assert code is not None, message
    assert kit_status(live, kit) is KitStatus.QUARANTINED
    page.get_by_role("link", name="Excursion list").first.click()
    row = page.locator("#open-excursions tbody tr", has_text=code.group(0))
    assert row.count() == 1
    assert kit in row.inner_text()
    assert page.get_by_role("link", name=re.compile("Resolve")).count() == 0
    page.screenshot(path=shots / "28-excursions-pharmacist.png", full_page=True)
    assert not BLIND_LEAKS.search(page.content())

    manager = browser.new_context(base_url=live.base_url, locale="en-GB")
    try:
        desk = manager.new_page()
        log_in(desk, live, cast.supply_manager)
        desk.get_by_role("link", name="Excursion list").first.click()
        desk.get_by_role("link", name=f"Resolve {code.group(0)}").click()
        assert desk.get_by_label("Excursion code").input_value() == code.group(0)
        desk.get_by_label(re.compile("Release")).check()
        desk.get_by_label(re.compile("Reason")).fill("logger reviewed: within stability data")
        desk.get_by_role("button", name="Record the decision").click()
        desk.get_by_text(f"Excursion {code.group(0)} resolved").wait_for()
        desk.get_by_role("link", name="See every excursion, open and resolved").click()
        done = desk.locator("#resolved-excursions tbody tr", has_text=code.group(0))
        assert done.count() == 1
        assert "Released: usable again" in done.inner_text()
        assert desk.locator("#open-excursions", has_text=code.group(0)).count() == 0
        desk.screenshot(path=shots / "29-excursions-resolved.png", full_page=True)
        assert not BLIND_LEAKS.search(desk.content())
    finally:
        manager.close()
    assert kit_status(live, kit) is KitStatus.AT_SITE
    assert ("excursion.released", f"user:{cast.supply_manager.email}") in actions(live)


def test_the_admin_creates_a_user_who_enrols_then_disables_them(
    context: Any, browser: Any, live: Live, cast: Cast, shots: Path
) -> None:
    email = "preparateur@chu-limoges.example.fr"
    page = context.new_page()
    log_in(page, live, cast.admin)
    page.get_by_role("link", name="Manage users").click()
    page.get_by_role("link", name="Create a user").click()
    page.get_by_label(re.compile("E-mail address")).fill(email)
    page.get_by_label("Role", exact=True).select_option(label="Pharmacist")
    page.get_by_label(f"Grant the study {STUDY}").check()
    page.get_by_label("Site FR03").first.check()
    page.screenshot(path=shots / "30-user-new.png", full_page=True)
    page.get_by_role("button", name="Create the user").click()
    code = page.locator("#enrolment-code").inner_text()
    assert re.fullmatch(r"[A-Z2-9]{4}(-[A-Z2-9]{4}){3}", code)
    page.screenshot(path=shots / "31-user-created.png", full_page=True)
    with live.container.uow(TEST_ACTOR) as uow:
        user = uow.users.by_email(email)
    assert user is not None
    assert user.role is Role.PHARMACIST
    assert user.sites == {STUDY: frozenset({"FR03"})}
    assert ("user.created", f"user:{cast.admin.email}") in actions(live)
    page.get_by_role("link", name="Back to the users").click()
    assert code not in page.content()
    row = page.locator("#users-table tbody tr", has_text=email)
    assert "Enrolment pending" in row.inner_text()

    newcomer = browser.new_context(base_url=live.base_url, locale="en-GB")
    try:
        mine = newcomer.new_page()
        mine.goto("/ui/enrol")
        mine.get_by_label("E-mail address").fill(email)
        mine.get_by_label("Enrolment code").fill(code)
        mine.get_by_label("New password", exact=True).fill(PASSWORD)
        mine.get_by_label("New password again").fill(PASSWORD)
        mine.get_by_role("button", name="Continue").click()
        secret = mine.locator("#totp-secret").inner_text().replace(" ", "")
        live.clock.advance(30)
        mine.locator("#code").fill(pyotp.TOTP(secret).at(live.clock()))
        mine.get_by_role("button", name="Finish enrolment").click()
        mine.wait_for_url("**/ui/")
        assert mine.get_by_role("link", name="Shipments").count() >= 1

        page.reload()
        row = page.locator("#users-table tbody tr", has_text=email)
        assert "Active" in row.inner_text()
        row.get_by_label(re.compile("Reason for disabling")).fill("left the hospital")
        row.get_by_role("button", name="Disable").click()
        page.get_by_text("The user is disabled").wait_for()
        row = page.locator("#users-table tbody tr", has_text=email)
        assert "Disabled" in row.inner_text()
        page.screenshot(path=shots / "32-user-disabled.png", full_page=True)
        with live.container.uow(TEST_ACTOR) as uow:
            user = uow.users.by_email(email)
        assert user is not None
        assert user.disabled
        assert ("user.disabled", f"user:{cast.admin.email}") in actions(live)
        # Their open session ended at once.
        mine.goto("/ui/")
        assert "/ui/login" in mine.url
    finally:
        newcomer.close()
    assert not BLIND_LEAKS.search(page.content())
