"""Emergency unblinding and the unblinded statistician's exports and study lock."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1", tags=["blinding"])
