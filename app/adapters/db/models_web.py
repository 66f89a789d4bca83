"""ORM rows of the web pages' users, their grants and their sessions.

A password and an enrolment code are stored only as argon2 hashes, the TOTP secret only
sealed (AES-256-GCM under the key-encryption key), a session only as the SHA-256 of the
token its cookie holds.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
)
from sqlalchemy import false as sa_false
from sqlalchemy.orm import Mapped, mapped_column

from app.adapters.db.models import Base


class WebUserRow(Base):
    __tablename__ = "web_user"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[str] = mapped_column(String(32), unique=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    role: Mapped[str] = mapped_column(String(32))
    all_studies: Mapped[bool] = mapped_column(Boolean)
    locale: Mapped[str | None] = mapped_column(String(8))
    password_hash: Mapped[str | None] = mapped_column(String(255))
    enrolment_hash: Mapped[str | None] = mapped_column(String(255))
    enrolment_expires_at: Mapped[datetime | None]
    totp_secret_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    totp_kek_id: Mapped[str | None] = mapped_column(String(64))
    totp_enrolled: Mapped[bool] = mapped_column(Boolean, server_default=sa_false())
    totp_last_step: Mapped[int] = mapped_column(BigInteger, server_default="0")
    disabled_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    last_login_at: Mapped[datetime | None]


class WebUserGrantRow(Base):
    """A study (and, for site roles, a site of it) a user may act in."""

    __tablename__ = "web_user_grant"
    __table_args__ = (UniqueConstraint("user_pk", "study_id", "site_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_pk: Mapped[int] = mapped_column(ForeignKey("web_user.id"), index=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"))
    site_id: Mapped[int | None] = mapped_column(ForeignKey("site.id"))


class WebSessionRow(Base):
    __tablename__ = "web_session"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_pk: Mapped[int] = mapped_column(ForeignKey("web_user.id"), index=True)
    state: Mapped[str] = mapped_column(String(16))
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    authenticated_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
