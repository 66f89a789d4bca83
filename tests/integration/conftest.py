"""Fixtures of the integration tests."""

from __future__ import annotations

import pytest

from app.services import supply


@pytest.fixture
def supply_ok(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests are about allocation: the site can always serve the first visit."""
    monkeypatch.setattr(supply, "first_visit_servable", lambda *a, **k: True)
