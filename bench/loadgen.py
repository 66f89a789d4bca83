"""A light load generator for the API benchmark: N keep-alive HTTP/1.1 connections on one
asyncio loop, each sending its next request as soon as the last answer is read.

It shares the machine's two cores with the server, so it is kept cheap: about a tenth of a
millisecond of CPU per request, where a thread-per-client httpx load took about 1.6 ms.
Only what the benchmark needs of HTTP/1.1 is read: the status line, `Content-Length` and the
body (the service never answers a POST with a chunked body).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx

# (path, JSON body) for one item of the load
Request = Callable[[str], tuple[str, dict[str, Any]]]


async def _connection(
    host: str,
    port: int,
    headers: bytes,
    items: Iterator[str],
    request: Request,
    latencies: list[float],
    failures: list[str],
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        for item in items:
            path, body = request(item)
            payload = json.dumps(body).encode()
            head = (
                f"POST {path} HTTP/1.1\r\nContent-Length: {len(payload)}\r\n".encode()
                + headers
                + b"\r\n"
            )
            started = time.perf_counter()
            writer.write(head + payload)
            status_line = await reader.readline()
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            answer = await reader.readexactly(length) if length else b""
            latencies.append(time.perf_counter() - started)
            status = int(status_line.split(b" ", 2)[1]) if status_line else 0
            if status != 201:
                failures.append(f"{status} {answer[:120].decode(errors='replace')}")
    finally:
        writer.close()


def run_load(
    base: str, token: str, items: list[str], clients: int, request: Request
) -> dict[str, Any]:
    """Send one request per item over `clients` connections; figures of the whole run."""
    url = urlsplit(base)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    headers = (
        f"Host: {url.netloc}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\n"
    ).encode()
    latencies: list[float] = []
    failures: list[str] = []
    shared = iter(items)  # one iterator: every item is sent exactly once, by whoever is free

    async def main() -> float:
        started = time.perf_counter()
        await asyncio.gather(
            *(
                _connection(host, port, headers, shared, request, latencies, failures)
                for _ in range(clients)
            )
        )
        return time.perf_counter() - started

    wall = asyncio.run(main())
    ordered = sorted(latencies)
    return {
        "requests": len(ordered),
        "failures": len(failures),
        "first_failure": failures[0] if failures else None,
        "per_s": len(ordered) / wall,
        "p50_ms": statistics.median(ordered) * 1000,
        "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
    }


def wait_until_ready(base: str, attempts: int = 300) -> None:
    """Wait (about 30 s at most) for a server's /ready to answer 200; else raise."""
    for _ in range(attempts):
        try:
            if httpx.get(f"{base}/ready", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{base}/ready did not answer 200")
