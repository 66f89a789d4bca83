"""The API's route class (app.adapters.api.routing): a `def` endpoint runs on the thread
pool behind an async wrapper, so its answer is validated on the event loop; nothing else
about it changes."""

from __future__ import annotations

import contextvars
import inspect
import threading
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, routing
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from pydantic import BaseModel

from app.adapters.api.app import create_app
from app.adapters.api.routing import ThreadPoolRoute
from app.bootstrap import Container

seen: contextvars.ContextVar[str] = contextvars.ContextVar("seen", default="unset")


class Answer(BaseModel):
    item: str
    thread: str
    seen: str


async def set_seen() -> str:
    seen.set("set by the dependency")
    return "dependency"


def _app() -> tuple[FastAPI, list[int]]:
    loop_threads: list[int] = []
    router = APIRouter(route_class=ThreadPoolRoute)

    @router.get("/items/{item}", response_model=Answer)
    def read(item: str, dep: Annotated[str, Depends(set_seen)]) -> dict[str, str]:
        # More than the model holds: the response model still filters the answer.
        return {"item": item, "thread": threading.current_thread().name, "seen": seen.get(),
                "arm": "must not be answered"}  # fmt: skip

    @router.get("/fails")
    def fails() -> None:
        raise LookupError("raised on the worker thread")

    @router.get("/loop")
    async def on_loop() -> dict[str, int]:
        loop_threads.append(threading.get_ident())
        return {"thread": threading.get_ident()}

    app = FastAPI()
    app.include_router(router)

    @app.exception_handler(LookupError)
    async def _lookup(_request: object, error: LookupError) -> object:
        from fastapi.responses import JSONResponse

        return JSONResponse({"error": str(error)}, status_code=404)

    return app, loop_threads


def test_a_def_endpoint_runs_on_a_worker_thread_with_the_request_context() -> None:
    app, _ = _app()
    with TestClient(app) as http:
        loop_thread = http.get("/loop").json()["thread"]
        answer = http.get("/items/K1").json()

    assert answer == {"item": "K1", "thread": answer["thread"], "seen": "set by the dependency"}
    assert answer["thread"] != threading.main_thread().name
    assert str(loop_thread) not in answer["thread"]


def test_its_exception_reaches_the_handlers() -> None:
    app, _ = _app()
    with TestClient(app) as http:
        response = http.get("/fails")

    assert response.status_code == 404
    assert response.json() == {"error": "raised on the worker thread"}


def _routes(app: FastAPI) -> list[tuple[str, APIRoute]]:
    """(path, route) of the app's API routes, wherever FastAPI keeps included routers."""
    iterate = getattr(routing, "iter_route_contexts", None)
    entries = list(iterate(app.routes)) if iterate is not None else list(app.routes)
    found = []
    for entry in entries:
        original = getattr(entry, "original_route", entry)
        if isinstance(original, APIRoute):
            found.append((str(getattr(entry, "path", original.path)), original))
    return found


def test_its_signature_is_what_fastapi_documents() -> None:
    app, _ = _app()
    (route,) = [r for path, r in _routes(app) if path == "/items/{item}"]

    assert inspect.iscoroutinefunction(route.endpoint)
    assert [p.name for p in route.dependant.path_params] == ["item"]
    assert route.name == "read"


def test_every_api_route_is_async_so_its_answer_is_validated_on_the_loop(
    container: Container,
) -> None:
    routes = [(p, r) for p, r in _routes(create_app(container)) if p.startswith(("/api", "/oauth"))]

    assert len(routes) >= 20
    plain = [path for path, r in routes if not inspect.iscoroutinefunction(r.endpoint)]
    assert plain == []
