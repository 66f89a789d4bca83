"""The ASGI entry point uvicorn calls in each worker process (`factory=True`)."""

from __future__ import annotations

from fastapi import FastAPI

from app.adapters.api.app import create_app
from app.adapters.logs import configure_logging
from app.settings import Settings


def factory() -> FastAPI:
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    return create_app(settings=settings)
