"""ORM rows (SQLAlchemy 2 typed mappings). The schema itself is made only by migrations."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy import false as sa_false
from sqlalchemy import true as sa_true
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC instant on every backend (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: every time is UTC and zone-aware")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


JSONDoc = JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSONDoc}  # noqa: RUF012 - SQLAlchemy reads it as a plain class attribute


class StudyRow(Base):
    __tablename__ = "study"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    title: Mapped[str] = mapped_column(String(500))
    protocol: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    definition_sha256: Mapped[str] = mapped_column(String(64))
    definition_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    mode: Mapped[str] = mapped_column(String(8), server_default="live")  # live | uat
    locked_at: Mapped[datetime | None]
    locked_by: Mapped[str | None] = mapped_column(String(128))


class StudyKeyRow(Base):
    """A study's data key, wrapped by a key-encryption key; never stored in clear."""

    __tablename__ = "study_key"
    __table_args__ = (UniqueConstraint("study_id", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    kek_id: Mapped[str] = mapped_column(String(64))
    wrapped_dek: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime]
    retired_at: Mapped[datetime | None]


class DepotRow(Base):
    __tablename__ = "depot"
    __table_args__ = (UniqueConstraint("study_id", "code"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"), index=True)
    code: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(200))
    country: Mapped[str] = mapped_column(String(2))


class SiteRow(Base):
    __tablename__ = "site"
    __table_args__ = (UniqueConstraint("study_id", "code"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"), index=True)
    code: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(200))
    country: Mapped[str] = mapped_column(String(2))
    depot_id: Mapped[int] = mapped_column(ForeignKey("depot.id"))
    active: Mapped[bool] = mapped_column(Boolean)
    timezone: Mapped[str] = mapped_column(String(64))
    # Closed to enrolment (no new randomization) apart from `active`: a closed site keeps
    # its resupply for the subjects on treatment.
    enrolment_open: Mapped[bool] = mapped_column(Boolean, server_default=sa_true())


class SubjectRow(Base):
    __tablename__ = "subject"
    __table_args__ = (UniqueConstraint("study_id", "subject_code"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"), index=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("site.id"), index=True)
    subject_code: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    strata: Mapped[dict[str, Any]]
    registered_at: Mapped[datetime]
    randomized_at: Mapped[datetime | None]
    mode: Mapped[str] = mapped_column(String(8), server_default="live")
    randomization_number: Mapped[int | None] = mapped_column(Integer)
    unblinded: Mapped[bool] = mapped_column(Boolean, server_default=sa_false())
    ended_at: Mapped[datetime | None]
    end_reason: Mapped[str | None] = mapped_column(String(40))  # discontinuation/screen failure
    rescreen_of: Mapped[int | None] = mapped_column(ForeignKey("subject.id"))
    # The levels as corrected after randomization; `strata` keeps those used to randomize.
    strata_corrected: Mapped[dict[str, Any] | None]
    eligibility: Mapped[dict[str, Any] | None]  # the attested answers, kept with it


class AuditEventRow(Base):
    """Append-only (a PostgreSQL trigger refuses UPDATE and DELETE); no foreign keys, so
    nothing deleted elsewhere can cascade onto it."""

    __tablename__ = "audit_event"
    __table_args__ = (UniqueConstraint("chain", "seq"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    chain: Mapped[str] = mapped_column(String(64))
    seq: Mapped[int] = mapped_column(Integer)
    occurred_at: Mapped[datetime] = mapped_column(index=True)
    actor_id: Mapped[str] = mapped_column(String(128))
    actor_role: Mapped[str] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(64), index=True)
    entity_type: Mapped[str] = mapped_column(String(32))
    entity_id: Mapped[str] = mapped_column(String(128))
    subject_id: Mapped[str | None] = mapped_column(String(64), index=True)
    reason: Mapped[str | None] = mapped_column(Text)
    before: Mapped[dict[str, Any] | None]
    after: Mapped[dict[str, Any] | None]
    request_id: Mapped[str | None] = mapped_column(String(64))
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditChainHeadRow(Base):
    __tablename__ = "audit_chain_head"

    chain: Mapped[str] = mapped_column(String(64), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime]


class ApiClientRow(Base):
    """An API client. The secret is stored only as an argon2 hash."""

    __tablename__ = "api_client"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    role: Mapped[str] = mapped_column(String(32))
    all_studies: Mapped[bool] = mapped_column(Boolean)
    secret_hash: Mapped[str] = mapped_column(String(255))
    secret_version: Mapped[int] = mapped_column(Integer)
    disabled_at: Mapped[datetime | None]
    created_at: Mapped[datetime]


class ApiClientGrantRow(Base):
    """A study (and, for site roles, a site of it) a client may act in."""

    __tablename__ = "api_client_grant"
    __table_args__ = (UniqueConstraint("client_pk", "study_id", "site_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_pk: Mapped[int] = mapped_column(ForeignKey("api_client.id"), index=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"))
    site_id: Mapped[int | None] = mapped_column(ForeignKey("site.id"))


class AuthThrottleRow(Base):
    """Failed token requests by client id asked for (known or not)."""

    __tablename__ = "auth_throttle"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer)
    first_failure_at: Mapped[datetime]
    locked_until: Mapped[datetime | None]


# --- Randomization -------------------------------------------------------------------------


class RandomizationListRow(Base):
    """A study's randomization list (live or UAT): its method and its secret seed, sealed."""

    __tablename__ = "randomization_list"
    __table_args__ = (UniqueConstraint("study_id", "mode", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"), index=True)
    mode: Mapped[str] = mapped_column(String(8))  # live | uat
    version: Mapped[int] = mapped_column(Integer)
    method: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))  # active | superseded
    seed_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    generated_at: Mapped[datetime]
    generated_by: Mapped[str] = mapped_column(String(128))


class StratumRow(Base):
    """One stratum of a list. Its slots (arm, block, block size and randomization number
    of each sequence number) are one sealed envelope; `next_sequence` is the cursor a
    randomization locks."""

    __tablename__ = "stratum"
    __table_args__ = (UniqueConstraint("list_id", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("randomization_list.id"), index=True)
    key: Mapped[str] = mapped_column(String(255))
    site_id: Mapped[int | None] = mapped_column(ForeignKey("site.id"))
    levels: Mapped[dict[str, Any]]
    next_sequence: Mapped[int] = mapped_column(Integer)
    length: Mapped[int] = mapped_column(Integer)
    slots_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    low_warned_at: Mapped[datetime | None]


class AllocationRow(Base):
    """A subject's allocation: at most one per subject, one per slot (stratum and sequence
    number) and one per randomization number."""

    __tablename__ = "allocation"
    __table_args__ = (
        UniqueConstraint("stratum_id", "sequence"),
        UniqueConstraint("list_id", "randomization_number"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subject_pk: Mapped[int] = mapped_column(ForeignKey("subject.id"), unique=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("randomization_list.id"))
    stratum_id: Mapped[int] = mapped_column(ForeignKey("stratum.id"))
    sequence: Mapped[int] = mapped_column(Integer)
    stratum_key: Mapped[str] = mapped_column(String(255))
    randomization_number: Mapped[int] = mapped_column(Integer)
    arm_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    trace_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    allocated_at: Mapped[datetime]


class IdempotencyRow(Base):
    """The first successful response to a POST with an Idempotency-Key, written in the same
    transaction as its effect."""

    __tablename__ = "idempotency_record"
    __table_args__ = (UniqueConstraint("principal", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    principal: Mapped[str] = mapped_column(String(128))
    key: Mapped[str] = mapped_column(String(255))
    fingerprint: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int | None] = mapped_column(Integer)
    response_body: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]


# --- Supply ----------------------------------------------------------------------------------


class LotRow(Base):
    __tablename__ = "lot"
    __table_args__ = (UniqueConstraint("study_id", "code"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"), index=True)
    code: Mapped[str] = mapped_column(String(32))
    expiry_date: Mapped[date] = mapped_column(Date)


class KitRow(Base):
    """A masked kit. Its type is sealed; where it is and what happened to it is not."""

    __tablename__ = "kit"
    __table_args__ = (
        UniqueConstraint("study_id", "kit_number"),
        Index("ix_kit_site_status", "site_id", "status"),
        Index("ix_kit_depot_status", "depot_id", "status"),
        # A subject's kits, by dispensation. Partial: most kits are never dispensed, so the
        # index stays small and costs nothing when a kit list is written.
        Index(
            "ix_kit_dispensation_id",
            "dispensation_id",
            postgresql_where=text("dispensation_id IS NOT NULL"),
            sqlite_where=text("dispensation_id IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"), index=True)
    kit_number: Mapped[str] = mapped_column(String(16))
    kit_type_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    lot_id: Mapped[int] = mapped_column(ForeignKey("lot.id"))
    expiry_date: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(16))
    quarantined_from: Mapped[str | None] = mapped_column(String(16))
    depot_id: Mapped[int | None] = mapped_column(ForeignKey("depot.id"))
    site_id: Mapped[int | None] = mapped_column(ForeignKey("site.id"))
    subject_pk: Mapped[int | None] = mapped_column(ForeignKey("subject.id"), index=True)
    dispensation_id: Mapped[int | None] = mapped_column(ForeignKey("dispensation.id"))
    updated_at: Mapped[datetime]


class ShipmentRow(Base):
    __tablename__ = "shipment"
    __table_args__ = (UniqueConstraint("study_id", "code"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"), index=True)
    code: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(16))  # initial | resupply
    status: Mapped[str] = mapped_column(String(16))  # in_transit | received | cancelled
    depot_id: Mapped[int] = mapped_column(ForeignKey("depot.id"))
    site_id: Mapped[int] = mapped_column(ForeignKey("site.id"), index=True)
    created_at: Mapped[datetime]
    received_at: Mapped[datetime | None]
    received_by: Mapped[str | None] = mapped_column(String(128))


class ShipmentKitRow(Base):
    __tablename__ = "shipment_kit"

    shipment_id: Mapped[int] = mapped_column(ForeignKey("shipment.id"), primary_key=True)
    kit_id: Mapped[int] = mapped_column(ForeignKey("kit.id"), primary_key=True)


class DispensationRow(Base):
    __tablename__ = "dispensation"
    __table_args__ = (UniqueConstraint("subject_pk", "visit"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subject_pk: Mapped[int] = mapped_column(ForeignKey("subject.id"), index=True)
    visit: Mapped[str] = mapped_column(String(32))
    weight_kg: Mapped[Decimal] = mapped_column(Numeric(6, 2))
    quantity: Mapped[int] = mapped_column(Integer)
    dispensed_at: Mapped[datetime]
    dispensed_by: Mapped[str] = mapped_column(String(128))


class VisitEventRow(Base):
    """A scheduled visit recorded without a dispensation: `missed`, or its dose `held`."""

    __tablename__ = "visit_event"
    __table_args__ = (UniqueConstraint("subject_pk", "visit"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subject_pk: Mapped[int] = mapped_column(ForeignKey("subject.id"), index=True)
    visit: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(16))  # missed | held
    reason: Mapped[str] = mapped_column(Text)
    recorded_at: Mapped[datetime]
    recorded_by: Mapped[str] = mapped_column(String(128))


class ExcursionRow(Base):
    """A temperature excursion: the kits are quarantined until released or rejected."""

    __tablename__ = "excursion"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"), index=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    site_id: Mapped[int | None] = mapped_column(ForeignKey("site.id"))
    shipment_id: Mapped[int | None] = mapped_column(ForeignKey("shipment.id"))
    description: Mapped[str] = mapped_column(Text)
    reported_at: Mapped[datetime]
    reported_by: Mapped[str] = mapped_column(String(128))
    resolution: Mapped[str | None] = mapped_column(String(16))  # released | rejected
    resolved_at: Mapped[datetime | None]
    resolved_by: Mapped[str | None] = mapped_column(String(128))


class ExcursionKitRow(Base):
    __tablename__ = "excursion_kit"

    excursion_id: Mapped[int] = mapped_column(ForeignKey("excursion.id"), primary_key=True)
    kit_id: Mapped[int] = mapped_column(ForeignKey("kit.id"), primary_key=True)


# --- Blinding ----------------------------------------------------------------------------------


class UnblindingRow(Base):
    """An emergency unblinding: who, when, why. The arm is never stored here."""

    __tablename__ = "unblinding"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subject_pk: Mapped[int] = mapped_column(ForeignKey("subject.id"), index=True)
    unblinded_by: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(Text)
    unblinded_at: Mapped[datetime]


class OutboxRow(Base):
    """Notifications to deliver (to the sponsor...), never holding an arm."""

    __tablename__ = "notification_outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"), index=True)
    kind: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]


class ResupplyReviewRow(Base):
    """A study's daily resupply review, claimed once per UTC date (whoever runs it first)."""

    __tablename__ = "resupply_review"

    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"), primary_key=True)
    review_date: Mapped[date] = mapped_column(Date, primary_key=True)
    reviewed_at: Mapped[datetime]


class EnrolmentCapRow(Base):
    """A warning threshold and a hard cap on randomized subjects, for the study (target ""),
    a country, a site or a stratum."""

    __tablename__ = "enrolment_cap"
    __table_args__ = (UniqueConstraint("study_id", "scope", "target"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"), index=True)
    scope: Mapped[str] = mapped_column(String(16))  # study | country | site | stratum
    target: Mapped[str] = mapped_column(String(128))
    warning_at: Mapped[int | None] = mapped_column(Integer)
    cap: Mapped[int | None] = mapped_column(Integer)
    set_at: Mapped[datetime]
    set_by: Mapped[str] = mapped_column(String(128))


# The web pages' tables, imported here so that every user of the metadata sees them.
from app.adapters.db import models_web  # noqa: E402, F401
