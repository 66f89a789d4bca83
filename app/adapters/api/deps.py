"""Dependencies shared by the routers."""

from __future__ import annotations

from fastapi import Request

from app.bootstrap import Container


async def get_container(request: Request) -> Container:
    # async: it only reads app state, so FastAPI need not hand it to a worker thread.
    container: Container = request.app.state.container
    return container
