from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from app.adapters.api.app import create_app
from app.adapters.studyfiles.codec import read_study_file
from app.bootstrap import Container
from app.services.studies import load_study
from tests.conftest import STUDIES_DIR, TEST_ACTOR


@pytest.fixture
def loaded(container: Container) -> Container:
    """The container with both example studies loaded."""
    for name in ("iris-7a", "iris-7b"):
        study, document, sha = read_study_file(STUDIES_DIR / f"{name}.toml")
        load_study(container.uow(TEST_ACTOR), study, document, sha)
    return container


@pytest.fixture
def client(loaded: Container) -> Iterator[TestClient]:
    with TestClient(create_app(loaded), raise_server_exceptions=False) as test_client:
        yield test_client
