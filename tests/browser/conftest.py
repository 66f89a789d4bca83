"""Browser tests: Playwright drives Debian's headless Chromium against a real server.

The server is uvicorn in a thread on 127.0.0.1 and a free port, over a fresh SQLite file
and a fresh keys directory, with iris-7a's list, kits and FR01's first shipment received.
Its pages' clock runs `offset` ahead of real time, so each TOTP code is drawn on a fresh
30-second step without waiting. Without /usr/bin/chromium these tests skip, unless
IWRS_TEST_REQUIRE_BROWSER=1 (as in CI), where they fail instead. They run in the SQLite run
only (IWRS_TEST_BACKENDS naming sqlite), since they bring their own database.

Screenshots go to test-output/screenshots/ (ignored by git).
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyotp
import pytest

from app.adapters.api.app import create_app
from app.adapters.crypto.keyring import init_keys
from app.adapters.db import migrate
from app.adapters.db.engine import make_engine
from app.adapters.studyfiles.codec import read_study_file
from app.bootstrap import Container, bootstrap
from app.domain.access import Principal
from app.domain.roles import Role
from app.services import randomization as rnd
from app.services import supply
from app.services.studies import load_study
from app.settings import Settings
from tests.conftest import BACKENDS, FAST_HASHER, STUDIES_DIR, TEST_ACTOR
from tests.web.conftest import Person, enrol

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REQUIRE_BROWSER = os.environ.get("IWRS_TEST_REQUIRE_BROWSER") == "1"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"
STUDY = "iris-7a"


@dataclass
class ServerClock:
    offset: timedelta = field(default_factory=timedelta)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)


@dataclass
class Live:
    base_url: str
    container: Container
    clock: ServerClock
    people: dict[str, Person]

    def code(self, who: Person) -> str:
        """A TOTP code of a fresh step (a code is accepted once)."""
        self.clock.advance(30)
        return pyotp.TOTP(who.secret).at(self.clock())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _prepare(container: Container, clock: ServerClock) -> dict[str, Person]:
    for name in ("iris-7a", "iris-7b"):
        study, document, sha = read_study_file(STUDIES_DIR / f"{name}.toml")
        load_study(container.uow(TEST_ACTOR), study, document, sha)
    rnd.generate_list(container.uow(TEST_ACTOR), "browser-tests", STUDY)
    supply.generate_kits(container.uow(TEST_ACTOR), STUDY)
    with container.uow(TEST_ACTOR) as uow:
        (shipment,) = uow.supply.shipments(STUDY, site="FR01")
    pharmacy = Principal("setup", Role.PHARMACIST, frozenset({STUDY}), {STUDY: frozenset({"FR01"})})
    supply.receive_shipment(container.uow(TEST_ACTOR), pharmacy, STUDY, shipment.code)
    people = {
        "investigator": (Role.INVESTIGATOR, "claire.martin@chu-limoges.example.fr"),
        "investigateur": (Role.INVESTIGATOR, "jean.dupont@chu-limoges.example.fr"),
        "auditor": (Role.AUDITOR, "audit@sponsor.example.org"),
        "statistician": (Role.UNBLINDED_STATISTICIAN, "stats@cro.example.org"),
        "pharmacist": (Role.PHARMACIST, "pharmacie@chu-limoges.example.fr"),
    }
    return {key: enrol(container, clock, role, email) for key, (role, email) in people.items()}


@pytest.fixture(scope="session")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    import uvicorn

    root = tmp_path_factory.mktemp("live")
    settings = Settings(
        database_url=f"sqlite:///{root / 'iwrs.db'}",
        keys_dir=root / "keys",
        auth_failure_delay_scale=0,
    )
    init_keys(settings.keys_dir)
    engine = make_engine(settings.database_url)
    migrate.upgrade(engine)
    container = bootstrap(settings, engine=engine, hasher=FAST_HASHER)
    clock = ServerClock()
    people = _prepare(container, clock)
    app = create_app(container)
    app.state.web.clock = clock
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            ws="none",
            http="h11",
            lifespan="off",
        )
    )
    thread = threading.Thread(target=server.run, name="live-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("the test server did not start")
        time.sleep(0.05)
    yield Live(f"http://127.0.0.1:{port}", container, clock, people)
    server.should_exit = True
    thread.join(10)
    container.dispose()


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    if "sqlite" not in BACKENDS:
        pytest.skip("the browser walks run once, with the SQLite backend (their own database)")
    if not Path(CHROMIUM).exists():
        message = f"{CHROMIUM} is absent: apt-get install -y chromium"
        if REQUIRE_BROWSER:
            pytest.fail(message + " (IWRS_TEST_REQUIRE_BROWSER=1)")
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def shots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


@pytest.fixture
def context(browser: Any, live: Live) -> Iterator[Any]:
    """A fresh browser profile (its own cookies), in English."""
    ctx = browser.new_context(base_url=live.base_url, locale="en-GB")
    yield ctx
    ctx.close()


def log_in(page: Any, live: Live, who: Person) -> None:
    page.goto("/ui/login")
    page.get_by_label(re.compile("E-mail")).fill(who.email)
    page.locator("#password").fill(who.password)
    page.locator("button[type=submit]").click()
    page.locator("#code").fill(live.code(who))
    page.locator("button[type=submit]").click()
    page.wait_for_url("**/ui/")
