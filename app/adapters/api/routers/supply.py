"""Kits, inventory, shipments and dispensing (blinded: counts and kit numbers, never types)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1", tags=["supply"])
