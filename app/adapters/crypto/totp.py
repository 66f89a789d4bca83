"""TOTP (RFC 6238) with pyotp: 6 digits, 30-second steps, SHA-1 (what authenticator apps
read from an otpauth:// URI), one step of clock drift accepted either way."""

from __future__ import annotations

from datetime import datetime

import pyotp

ISSUER = "IWRS"
STEP_SECONDS = 30


class Totp:
    def new_secret(self) -> str:
        return pyotp.random_base32(length=32)

    def provisioning_uri(self, secret: str, email: str) -> str:
        return pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name=ISSUER)

    def verify(self, secret: str, code: str, now: datetime, after_step: int) -> int | None:
        digits = "".join(c for c in code if c.isdigit())
        if len(digits) != 6:
            return None
        totp = pyotp.TOTP(secret)
        step = int(now.timestamp()) // STEP_SECONDS
        for candidate in (step, step - 1, step + 1):
            if candidate > after_step and totp.verify(
                digits, for_time=candidate * STEP_SECONDS, valid_window=0
            ):
                return candidate
        return None
