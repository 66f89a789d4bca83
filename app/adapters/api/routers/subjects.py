"""Subjects: registration, randomization and the blinded subject view."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1", tags=["subjects"])
