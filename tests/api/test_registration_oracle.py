"""Registration is no existence oracle (issue 19): a caller registering an id held by a
subject it may not see gets the refusal an id reserved to another site gets, whether taken
or not; a caller who may see the subject gets `subject_already_registered`."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import event

from app.adapters.db import hot
from app.bootstrap import Container
from app.domain.roles import Role
from tests.api.conftest import Login
from tests.conftest import TEST_ACTOR

API = "/api/v1/studies/iris-7a"
STRATA = {"shock": "yes", "age": "lt65"}
VARYING = {"date"}  # the only header that may differ between two answers


def register(client: TestClient, headers: dict[str, str], subject_id: str, site: str) -> Any:
    body = {"subject_id": subject_id, "site_id": site, "strata": STRATA}
    # One request id for all, so that two answers can be compared byte for byte.
    return client.post(
        f"{API}/subjects", json=body, headers={**headers, "X-Request-Id": "oracle-probe"}
    )


def answer(response: Any) -> tuple[int, bytes, dict[str, str]]:
    """Everything a caller sees of an answer but what differs on every request."""
    headers = {k: v for k, v in response.headers.items() if k.lower() not in VARYING}
    return response.status_code, response.content, headers


@contextmanager
def statements(container: Container) -> Iterator[list[str]]:
    """The SQL statements run meanwhile (their text, without the parameters), through
    SQLAlchemy or, on PostgreSQL, on the driver's connection (app.adapters.db.hot)."""
    seen: list[str] = []

    def record(*args: Any) -> None:
        seen.append(re.sub(r"sa_savepoint_\d+", "sa_savepoint", args[2]))

    through_driver = hot._execute

    def execute(raw: Any, sent: Any) -> None:
        seen.append(str(sent.compiled.sql))
        through_driver(raw, sent)

    event.listen(container.engine, "before_cursor_execute", record)
    hot._execute = execute  # type: ignore[assignment]  # a spy, put back below
    try:
        yield seen
    finally:
        hot._execute = through_driver  # type: ignore[assignment]
        event.remove(container.engine, "before_cursor_execute", record)


class TestForeignSubjectId:
    def test_an_id_taken_at_another_site_gets_the_reserved_ids_refusal(
        self, client: TestClient, login: Login, loaded: Container
    ) -> None:
        fr01 = login(Role.INVESTIGATOR, sites=["FR01"])
        fr02 = login(Role.INVESTIGATOR, sites=["FR02"])
        register(client, fr01, "FR02-900", "FR01")  # warm every cache on this path
        with statements(loaded) as before:
            fresh = register(client, fr01, "FR02-007", "FR01")
        assert fresh.status_code == 409
        assert fresh.json()["code"] == "subject_id_unavailable"
        assert register(client, fr02, "FR02-007", "FR02").status_code == 201
        with statements(loaded) as after:
            taken = register(client, fr01, "FR02-007", "FR01")
        # Status, body and headers: nothing tells the taken id from the fresh one.
        assert answer(taken) == answer(fresh)
        # Nor the work done: the same statements, in the same order.
        assert after == before
        assert any("subject" in s for s in before), before
        assert "FR02" not in taken.json()["detail"].replace("FR02-007", "")

    def test_an_id_without_a_site_code_says_unavailable_and_nothing_more(
        self, client: TestClient, login: Login, loaded: Container
    ) -> None:
        fr01 = login(Role.INVESTIGATOR, sites=["FR01"])
        fr02 = login(Role.INVESTIGATOR, sites=["FR02"])
        assert register(client, fr02, "S-0042", "FR02").status_code == 201
        events = _audit_count(loaded)
        refused = register(client, fr01, "S-0042", "FR01")
        assert refused.status_code == 409
        problem = refused.json()
        assert problem["code"] == "subject_id_unavailable"
        assert set(problem) == {"type", "title", "status", "detail", "code", "request_id"}
        assert "FR02" not in problem["detail"]
        # Its refusal reads like the reserved id's (the id itself apart).
        reserved = register(client, fr01, "FR02-900", "FR01").json()
        assert reserved["detail"].replace("FR02-900", "S-0042") == problem["detail"]
        assert {k: v for k, v in reserved.items() if k != "detail"} == {
            k: v for k, v in problem.items() if k != "detail"
        }
        assert _audit_count(loaded) == events  # a refusal writes nothing
        # The subject is not found either, so the refusal is all the caller learns.
        assert client.get(f"{API}/subjects/S-0042", headers=fr01).status_code == 404

    def test_a_caller_who_may_see_the_subject_is_told_it_is_registered(
        self, client: TestClient, login: Login
    ) -> None:
        fr02 = login(Role.INVESTIGATOR, sites=["FR02"])
        assert register(client, fr02, "FR02-011", "FR02").status_code == 201
        for headers, site in (
            (fr02, "FR02"),  # the subject's own site
            (login(Role.INVESTIGATOR, sites=["FR01", "FR02"]), "FR01"),
            (login(Role.EDC), "FR01"),  # every site of the study
        ):
            again = register(client, headers, "FR02-011", site)
            assert again.status_code == 409
            assert again.json()["code"] == "subject_already_registered"
        # ... and only them.
        other = register(client, login(Role.INVESTIGATOR, sites=["FR01"]), "FR02-011", "FR01")
        assert other.json()["code"] == "subject_id_unavailable"

    def test_ids_of_ones_own_sites_and_plain_ids_register(
        self, client: TestClient, login: Login
    ) -> None:
        fr01 = login(Role.INVESTIGATOR, sites=["FR01"])
        assert register(client, fr01, "FR01-001", "FR01").status_code == 201
        assert register(client, fr01, "fr01.002", "FR01").status_code == 201
        assert register(client, fr01, "FR021-1", "FR01").status_code == 201  # no site FR021
        assert register(client, fr01, "FR02", "FR01").status_code == 201  # no separator
        # A caller seeing every site numbers as it likes; a reserved id is refused to others.
        assert register(client, login(Role.EDC), "FR03-001", "FR01").status_code == 201
        refused = register(client, fr01, "fr03_002", "FR01")
        assert refused.json()["code"] == "subject_id_unavailable"


def _audit_count(container: Container) -> int:
    from app.adapters.db.audit import iter_chain

    with container.uow(TEST_ACTOR) as uow:
        return sum(1 for _ in iter_chain(uow.session, "iris-7a"))
