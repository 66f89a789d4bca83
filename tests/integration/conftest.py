"""Fixtures of the integration tests."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, delete
from sqlalchemy.orm import Session

from app.adapters.db.models import AuditChainHeadRow
from app.services import supply


@pytest.fixture
def supply_ok(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests are about allocation: the site can always serve the first visit."""
    monkeypatch.setattr(supply, "first_visit_servable", lambda *a, **k: True)


@pytest.fixture
def chain(engine: Engine) -> Iterator[str]:
    """A chain name of this test's own (and names it starts); their heads removed after."""
    name = f"chain-{secrets.token_hex(4)}"
    yield name
    with Session(engine) as session, session.begin():
        session.execute(delete(AuditChainHeadRow).where(AuditChainHeadRow.chain.like(f"{name}%")))
