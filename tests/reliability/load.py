"""Load from client processes: each posts its share of requests over its own connection and
reports (item, status, body), or the transport error when the answer never came."""

from __future__ import annotations

import multiprocessing
from collections.abc import Sequence
from typing import Any

import httpx

Outcome = tuple[str, int, str]  # (item, HTTP status or 0 for no answer, body or error)


def post_each(
    base_url: str, token: str, path_template: str, body: dict[str, Any], items: Sequence[str]
) -> list[Outcome]:
    """POST `body` to the path of every item in turn, with an Idempotency-Key per item."""
    outcomes: list[Outcome] = []
    with httpx.Client(
        base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=60
    ) as http:
        for item in items:
            path = path_template.format(item=item)
            try:
                response = http.post(path, json=body, headers={"Idempotency-Key": f"{path}#{body}"})
                outcomes.append((item, response.status_code, response.text))
            except httpx.TransportError as exc:
                outcomes.append((item, 0, repr(exc)))
    return outcomes


def _child(args: tuple[Any, ...], queue: Any) -> None:
    try:
        queue.put(("ok", post_each(*args)))
    except Exception as exc:  # reported to the parent, which fails the test
        queue.put(("error", repr(exc)))


def post_from_processes(
    base_url: str,
    token: str,
    path_template: str,
    body: dict[str, Any],
    items: Sequence[str],
    processes: int,
    timeout: float = 180,
) -> list[Outcome]:
    """Split the items over `processes` client processes racing each other."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [
        ctx.Process(
            target=_child,
            args=((base_url, token, path_template, body, list(items[p::processes])), queue),
        )
        for p in range(processes)
    ]
    for proc in procs:
        proc.start()
    try:
        results = [queue.get(timeout=timeout) for _ in procs]
    finally:
        for proc in procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
    errors = [detail for kind, detail in results if kind != "ok"]
    assert not errors, errors
    return [outcome for _kind, batch in results for outcome in batch]
