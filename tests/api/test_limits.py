"""Request size limits (issue 19): a body past its route's limit is refused (413) before it is
read whole, oversized headers are refused (431), and an error body echoes only a bounded
excerpt of the request."""

from __future__ import annotations

import asyncio
import dataclasses
import select
import socket
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.adapters.api.app import create_app
from app.adapters.api.problems import install_problem_handlers
from app.adapters.cli import serve
from app.bootstrap import Container
from app.domain.listupload import UploadProblem
from app.services.lists import ListUploadRejected
from tests.api.conftest import Login

MiB = 1024 * 1024
REGISTER = "/api/v1/studies/iris-7a/subjects"
UPLOAD = "/api/v1/studies/iris-7a/randomization-list/upload"
HUGE = 55_000_000  # the body of the report


class Counted:
    """A request body streamed in chunks, counting how many the server asked for."""

    def __init__(self, total: int, chunk: int = 64 * 1024) -> None:
        self.total, self.chunk, self.sent = total, chunk, 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while self.sent < self.total:
            piece = b" " * min(self.chunk, self.total - self.sent)
            self.sent += len(piece)
            yield piece


def _post_streamed(app: FastAPI, body: Counted, headers: dict[str, str]) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            return await http.post(REGISTER, content=body, headers=headers)

    return asyncio.run(go())


def _is_too_large(response: httpx.Response) -> None:
    assert response.status_code == 413, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "request_too_large"


class TestBodyLimit:
    def test_a_declared_55_mb_body_is_refused_before_a_byte_is_read(
        self, loaded: Container
    ) -> None:
        body = Counted(HUGE)
        started = time.perf_counter()
        response = _post_streamed(
            create_app(loaded),
            body,
            {"Content-Type": "application/json", "Content-Length": str(HUGE)},
        )
        _is_too_large(response)
        assert response.json()["max_body_bytes"] == loaded.settings.max_body_bytes
        assert response.headers["connection"] == "close"
        assert body.sent == 0
        assert time.perf_counter() - started < 5

    def test_an_undeclared_55_mb_body_is_refused_once_past_the_limit(
        self, loaded: Container
    ) -> None:
        body = Counted(HUGE, chunk=16 * 1024)
        response = _post_streamed(create_app(loaded), body, {"Content-Type": "application/json"})
        _is_too_large(response)
        # Read up to the limit and one chunk more, not the 55 MB.
        assert body.sent <= loaded.settings.max_body_bytes + body.chunk

    def test_a_real_server_stops_reading_a_55_mb_body(self, loaded: Container) -> None:
        with (
            _Served(create_app(loaded)) as port,
            socket.create_connection(("127.0.0.1", port)) as s,
        ):
            s.sendall(
                f"POST {REGISTER} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                "Transfer-Encoding: chunked\r\n\r\n".encode()
            )
            chunk = b"%x\r\n%s\r\n" % (64 * 1024, b" " * 64 * 1024)
            sent = 0
            while sent < HUGE and not select.select([s], [], [], 0)[0]:
                try:
                    s.sendall(chunk)
                except OSError:
                    break
                sent += 64 * 1024
            s.settimeout(10)
            answer = s.recv(65536)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        assert b"request_too_large" in answer
        assert sent < 16 * MiB

    def test_a_large_list_upload_passes_the_size_gate(
        self, client: TestClient, login: Login
    ) -> None:
        csv = b"stratum,sequence,randomization_number,arm,block\n" + b"x" * (6 * MiB)
        headers = {**login("unblinded_statistician"), "Content-Type": "text/csv"}
        # Read whole and handed to the use case (which refuses: iris-7a generates its lists).
        response = client.post(UPLOAD, content=csv, headers=headers)
        assert response.json()["code"] == "wrong_randomization_method"
        # The same bytes as JSON, and an upload past its own limit, are refused unread.
        json_headers = {**headers, "Content-Type": "application/json"}
        _is_too_large(client.post(REGISTER, content=csv, headers=json_headers))
        _is_too_large(client.post(UPLOAD, content=csv + b"x" * (3 * MiB), headers=headers))

    def test_a_web_form_has_the_small_limit(self, client: TestClient) -> None:
        response = client.post(
            "/ui/login",
            content=b"email=a%40b.c&password=" + b"x" * (128 * 1024),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        _is_too_large(response)


class TestHeaderLimit:
    def test_200_kb_of_headers_are_refused(self, client: TestClient, login: Login) -> None:
        assert client.get("/api/v1/studies", headers=login("edc")).status_code == 200
        response = client.get("/health", headers={"X-Padding": "x" * 200_000})
        assert response.status_code == 431, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "request_headers_too_large"

    def test_too_many_headers_are_refused(self, client: TestClient) -> None:
        response = client.get("/health", headers={f"X-H{i}": "1" for i in range(200)})
        assert (response.status_code, response.json()["code"]) == (
            431,
            "request_headers_too_large",
        )

    def test_uvicorn_is_given_the_head_limit(self, monkeypatch: pytest.MonkeyPatch) -> None:
        seen: dict[str, Any] = {}
        monkeypatch.setattr(uvicorn, "run", lambda *_a, **kw: seen.update(kw))
        monkeypatch.setenv("IWRS_MAX_HEADER_BYTES", "20000")
        serve.run_server("127.0.0.1", 8000, 1)
        assert seen["h11_max_incomplete_event_size"] == 20000 + serve.REQUEST_LINE_BYTES


class TestBoundedErrors:
    def test_10000_unknown_keys_give_a_small_422(self, loaded: Container, login: Login) -> None:
        # A limit raised far enough to take the body: the answer is bounded on its own.
        roomy = dataclasses.replace(
            loaded, settings=loaded.settings.model_copy(update={"max_body_bytes": 4 * MiB})
        )
        body = {"subject_id": "S-1", "site_id": "FR01"} | {
            f"unknown_{i:05d}_" + "k" * 200: i for i in range(10_000)
        }
        with TestClient(create_app(roomy), raise_server_exceptions=False) as client:
            response = client.post(REGISTER, json=body, headers=login("edc"))
        assert response.status_code == 422, response.text[:500]
        assert len(response.content) < 8 * 1024
        problem = response.json()
        assert problem["code"] == "validation_error"
        assert len(problem["errors"]) == 20
        assert problem["errors_omitted"] == 10_000 - 20
        assert all(len(part) <= 100 for e in problem["errors"] for part in e["loc"])
        assert "10000 issues" in problem["detail"]

    def test_an_upload_s_problems_are_bounded(self) -> None:
        app = FastAPI()
        install_problem_handlers(app)

        @app.get("/boom")
        def boom() -> None:
            found = [UploadProblem(n, "unknown arm " + repr("A" * 5000)) for n in range(5000)]
            raise ListUploadRejected("the list has 5000 problem(s)", found)

        response = TestClient(app).get("/boom")
        assert response.status_code == 422
        assert len(response.content) < 8 * 1024
        assert len(response.json()["problems"]) == 20
        assert response.json()["problems_omitted"] == 5000 - 20


class _Server(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # a thread cannot; the test stops it
        pass


def _port(server: uvicorn.Server) -> int:
    sockets = server.servers[0].sockets
    return int(sockets[0].getsockname()[1])


class _Served:
    """uvicorn serving `app` on a free loopback port in a thread, for one test."""

    def __init__(self, app: FastAPI) -> None:
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, lifespan="off")
        self.server = _Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> int:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return _port(self.server)

    def __exit__(self, *_exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
