"""Blinding use cases: emergency unblinding, the unblinded statistician's exports, the study
lock, reading arms after the lock, and the key-encryption key rotation.

Emergency unblinding (ICH E6(R3)): a caller whose role the study's unblinding policy names
(and, for an investigator, only for a subject of one of its sites), holding a token issued
within the policy's `fresh_token_seconds`, gives a reason (1 to 2000 characters) and learns
one randomized subject's arm. In one transaction the subject is flagged unblinded, an
unblinding record, an audit event and a notification to the sponsor are written, none of
them holding the arm: the arm goes to the caller only. Every refused attempt is audited
too (`unblinding.refused`, with the refusal code), in a unit of work of its own that is
committed although the refused one rolls back. A reason the database cannot store (a lone
surrogate, a NUL: app.domain.text) is such a refusal, recorded with those characters
replaced. The replay of an idempotent unblinding is answered only after the same checks (the
policy, the token's freshness, the scope), and refused and audited as a new request would be.

Secrets sealed before envelopes were padded (IWRS1, whose length is the value's) are sealed
again, padded (IWRS2), by `reseal_legacy`: in one transaction, one audit event per study
holding only counts.

The lock is irreversible: once a statistician locks a study, nobody registers, randomizes or
dispenses in it, and each investigator may read the arms of its own sites' subjects.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from app.domain.access import Action, Principal
from app.domain.audit import AuditEvent
from app.domain.errors import Conflict, DomainError, StudyNotFound
from app.domain.randomization import stratum_key
from app.domain.roles import Role
from app.domain.study import Study
from app.domain.subjects import NoActiveList, Subject, SubjectNotFound, SubjectNotRandomized
from app.domain.text import storable, text_problem
from app.services.ports import ResealedStudy, RewrappedKey, UnitOfWork

MAX_REASON = 2000
T = TypeVar("T")


class TokenNotFresh(DomainError):
    """Unblinding needs a token issued within the study's freshness window."""

    code = "token_not_fresh"


class InvalidRequest(DomainError):
    """The request is not valid (checked by the use case, so that a refusal is audited)."""

    code = "validation_error"


class ReasonInvalid(InvalidRequest):
    """A reason (1 to 2000 characters) is required."""


class BlindingForbidden(DomainError):
    """The study's policy does not let this role see an arm."""

    code = "forbidden"


class StudyLocked(Conflict):
    """The study is locked: nothing is registered, randomized or dispensed any more."""

    code = "study_locked"


class StudyNotLocked(Conflict):
    """Arms are readable by investigators only once the study is locked."""

    code = "study_not_locked"


def _visible_study(uow: UnitOfWork, principal: Principal, slug: str) -> Study:
    if not principal.sees_study(slug):
        raise StudyNotFound(f"no study {slug!r}")
    stored = uow.studies.get(slug)
    if stored is None:
        raise StudyNotFound(f"no study {slug!r}")
    return stored.study


def _reason(reason: str | None) -> str:
    text = (reason or "").strip()
    if not text or len(text) > MAX_REASON:
        raise ReasonInvalid(f"a reason of 1 to {MAX_REASON} characters is required")
    problem = text_problem(text)
    if problem is not None:
        raise ReasonInvalid(f"the reason: {problem}")
    return text


def _arm_label(study: Study, code: str) -> str:
    return next((a.label for a in study.arms if a.code == code), code)


def _stratum(study: Study, subject: Subject) -> str:
    site = subject.site if study.randomization.stratify_by_site else None
    return stratum_key(site, subject.strata, [f.code for f in study.factors])


def _stratum_corrected(study: Study, subject: Subject) -> str | None:
    """The stratum the subject's corrected levels name (None: never corrected); the
    allocation stays in the stratum it was randomized in."""
    if subject.strata_corrected is None:
        return None
    site = subject.site if study.randomization.stratify_by_site else None
    return stratum_key(site, subject.strata_corrected, [f.code for f in study.factors])


def ensure_not_locked(uow: UnitOfWork, slug: str) -> None:
    """Inside an open unit of work: refuse (409 study_locked) when the study is locked. The
    study row stays share-locked until commit, so a concurrent lock waits for this change."""
    if uow.blinding.locked(slug, hold=True) is not None:
        raise StudyLocked(f"study {slug!r} is locked")


# --- Emergency unblinding -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Unblinding:
    study: str
    subject_id: str
    site: str
    arm: str
    arm_label: str
    unblinded_at: datetime
    unblinded_by: str
    role: str


def record_refusal(
    uow: UnitOfWork,
    principal: Principal,
    slug: str,
    subject_id: str,
    reason: str | None,
    code: str,
    action: str = "unblinding.refused",
) -> None:
    """Audit a refused attempt in its own committed unit of work (in the study's chain when
    the study exists, else in the system chain)."""
    with uow:
        chain = slug if uow.studies.exists(slug) else None
        text = storable((reason or "").strip())[:MAX_REASON] or None
        uow.record(
            AuditEvent(
                action=action,
                entity_type="subject",
                entity_id=subject_id[:64],
                study=chain,
                subject_id=subject_id[:64],
                reason=text,
                after={"code": code, "role": principal.role.value, "study": slug[:64]},
            )
        )
        uow.commit()


def unblind(
    uow: UnitOfWork,
    refusals: UnitOfWork,
    principal: Principal,
    slug: str,
    subject_id: str,
    reason: str | None,
    now: datetime | None = None,
) -> Unblinding:
    """Reveal one subject's arm to the caller (see the module doc); `refusals` records a
    refused attempt."""
    return _audit_refusal(
        refusals,
        principal,
        slug,
        subject_id,
        reason,
        lambda: _unblind(uow, principal, slug, subject_id, reason, now or datetime.now(UTC)),
    )


def _check_fresh(principal: Principal, study: Study, now: datetime) -> None:
    window = study.unblinding.fresh_token_seconds
    issued = principal.issued_at
    if issued is None or (now - issued).total_seconds() > window:
        raise TokenNotFresh(
            f"unblinding needs a token issued less than {window} s ago; get a new token"
        )


def _unblind(
    uow: UnitOfWork,
    principal: Principal,
    slug: str,
    subject_id: str,
    reason: str | None,
    now: datetime,
) -> Unblinding:
    with uow:
        study = _visible_study(uow, principal, slug)
        role = principal.role
        if not principal.may(Action.UNBLIND) or role not in study.unblinding.roles:
            raise BlindingForbidden(
                f"the unblinding policy of study {slug!r} does not allow the {role.value} role"
            )
        _check_fresh(principal, study, now)
        text = _reason(reason)
        subject = uow.subjects.get(
            slug, subject_id, sites=principal.sites_in(slug), for_update=True
        )
        if subject is None:
            raise SubjectNotFound(f"no subject {subject_id!r} in study {slug!r}")
        arm = uow.lists.arm_of(subject)
        if arm is None:
            raise SubjectNotRandomized(f"subject {subject_id!r} is not randomized")
        by = principal.actor.actor_id
        uow.subjects.set_unblinded(subject)
        unblinding_id = uow.blinding.add_unblinding(subject, by, role.value, text, now)
        uow.blinding.notify(
            slug,
            "subject.unblinded",
            {
                "study": slug,
                "subject": subject.subject_id,
                "site": subject.site,
                "who": by,
                "role": role.value,
                "when": now.isoformat(),
                "reason": text,
            },
            now,
        )
        uow.record(
            AuditEvent(
                action="subject.unblinded",
                entity_type="subject",
                entity_id=subject.subject_id,
                study=slug,
                subject_id=subject.subject_id,
                reason=text,
                before={"unblinded": subject.unblinded},
                after={
                    "unblinded": True,
                    "unblinding_id": unblinding_id,
                    "site": subject.site,
                    "role": role.value,
                },
            )
        )
        result = Unblinding(
            slug, subject.subject_id, subject.site, arm, _arm_label(study, arm), now, by, role.value
        )
        uow.commit(result)
    return result


def reveal_again(
    uow: UnitOfWork,
    refusals: UnitOfWork,
    principal: Principal,
    slug: str,
    subject_id: str,
    reason: str | None,
    now: datetime | None = None,
) -> tuple[str, str]:
    """The (arm, label) of a subject this caller unblinded before, for the replay of the same
    idempotent request (whose stored answer holds no arm). A replay is answered only to a
    caller a new request would be answered to: the policy, the token's freshness and the
    scope are checked again, and a refusal is audited as a new request's would be."""
    return _audit_refusal(
        refusals,
        principal,
        slug,
        subject_id,
        reason,
        lambda: _reveal_again(uow, principal, slug, subject_id, now or datetime.now(UTC)),
    )


def _audit_refusal(
    refusals: UnitOfWork,
    principal: Principal,
    slug: str,
    subject_id: str,
    reason: str | None,
    attempt: Callable[[], T],
) -> T:
    """Run an unblinding attempt; a refusal is audited (in its own transaction) and raised."""
    try:
        return attempt()
    except DomainError as exc:
        record_refusal(refusals, principal, slug, subject_id, reason, exc.code)
        raise


def _reveal_again(
    uow: UnitOfWork, principal: Principal, slug: str, subject_id: str, now: datetime
) -> tuple[str, str]:
    with uow:
        study = _visible_study(uow, principal, slug)
        if not principal.may(Action.UNBLIND) or principal.role not in study.unblinding.roles:
            raise BlindingForbidden(
                f"the unblinding policy of study {slug!r} does not allow this role"
            )
        _check_fresh(principal, study, now)
        subject = uow.subjects.get(slug, subject_id, sites=principal.sites_in(slug))
        arm = None if subject is None else uow.lists.arm_of(subject)
        if subject is None or arm is None or not subject.unblinded:
            raise SubjectNotFound(f"no unblinded subject {subject_id!r} in study {slug!r}")
        uow.record(
            AuditEvent(
                action="subject.unblinding_replayed",
                entity_type="subject",
                entity_id=subject.subject_id,
                study=slug,
                subject_id=subject.subject_id,
                after={"role": principal.role.value, "site": subject.site},
            )
        )
        uow.commit()
    return arm, _arm_label(study, arm)


# --- The lock and arms after it --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StudyLock:
    study: str
    locked_at: datetime
    locked_by: str


def lock_study(
    uow: UnitOfWork,
    principal: Principal,
    slug: str,
    reason: str | None,
    now: datetime | None = None,
) -> StudyLock:
    """Lock the study for good (409 study_locked the second time); audited."""
    now = now or datetime.now(UTC)
    with uow:
        _visible_study(uow, principal, slug)
        text = _reason(reason)
        by = principal.actor.actor_id
        if not uow.blinding.lock(slug, now, by):
            raise StudyLocked(f"study {slug!r} is locked already")
        uow.record(
            AuditEvent(
                action="study.locked",
                entity_type="study",
                entity_id=slug,
                study=slug,
                reason=text,
                before={"locked": False},
                after={"locked": True, "locked_at": now.isoformat()},
            )
        )
        result = StudyLock(slug, now, by)
        uow.commit(result)
    return result


@dataclass(frozen=True, slots=True)
class SubjectArm:
    study: str
    subject_id: str
    site: str
    arm: str
    arm_label: str
    locked_at: datetime


def arm_after_lock(uow: UnitOfWork, principal: Principal, slug: str, subject_id: str) -> SubjectArm:
    """An investigator reads the arm of a subject of its own site, once the study is locked."""
    if principal.role is not Role.INVESTIGATOR:
        raise BlindingForbidden("only an investigator reads arms after the lock")
    with uow:
        study = _visible_study(uow, principal, slug)
        locked = uow.blinding.locked(slug)
        if locked is None:
            raise StudyNotLocked(f"study {slug!r} is not locked")
        subject = uow.subjects.get(slug, subject_id, sites=principal.sites_in(slug))
        if subject is None:
            raise SubjectNotFound(f"no subject {subject_id!r} in study {slug!r}")
        arm = uow.lists.arm_of(subject)
        if arm is None:
            raise SubjectNotRandomized(f"subject {subject_id!r} is not randomized")
        uow.record(
            AuditEvent(
                action="subject.arm_read",
                entity_type="subject",
                entity_id=subject.subject_id,
                study=slug,
                subject_id=subject.subject_id,
                after={"site": subject.site, "role": principal.role.value},
            )
        )
        uow.commit()
    label = _arm_label(study, arm)
    return SubjectArm(slug, subject.subject_id, subject.site, arm, label, locked[0])


# --- The statistician's exports ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ListLine:
    stratum: str
    sequence: int
    randomization_number: int
    block: int
    block_size: int
    arm: str
    subject_id: str | None
    allocated_at: datetime | None
    stratum_corrected: str | None = None  # the subject's stratum as corrected, if ever


@dataclass(frozen=True, slots=True)
class ListExport:
    study: str
    mode: str
    version: int
    method: str
    lines: tuple[ListLine, ...]


def export_list(
    uow: UnitOfWork, principal: Principal, slug: str, fmt: str, mode: str | None = None
) -> ListExport:
    """Every slot of the study's active list (of its current mode unless `mode`), with the
    subject that took it; audited."""
    with uow:
        study = _visible_study(uow, principal, slug)
        mode = mode or uow.studies.mode(slug)
        info = uow.lists.active(slug, mode)
        if info is None:
            raise NoActiveList(f"study {slug!r} has no {mode} randomization list")
        taken: dict[int, tuple[Subject, str]] = {
            number: (subject, arm) for subject, arm, number in uow.lists.allocations(slug, mode)
        }
        lines = []
        for key, slots in sorted(uow.lists.slots(info).items()):
            for slot, number in slots:
                subject, arm = taken.get(number, (None, slot.arm))
                lines.append(
                    ListLine(
                        stratum=key,
                        sequence=slot.sequence,
                        randomization_number=number,
                        block=slot.block,
                        block_size=slot.block_size,
                        arm=arm,
                        subject_id=None if subject is None else subject.subject_id,
                        allocated_at=None if subject is None else subject.randomized_at,
                        stratum_corrected=None
                        if subject is None
                        else _stratum_corrected(study, subject),
                    )
                )
        uow.record(
            AuditEvent(
                action="randomization_list.exported",
                entity_type="randomization_list",
                entity_id=f"{mode}:v{info.version}",
                study=slug,
                after={"format": fmt, "slots": len(lines), "allocated": len(taken)},
            )
        )
        uow.commit()
    return ListExport(slug, mode, info.version, info.method, tuple(lines))


@dataclass(frozen=True, slots=True)
class PooledAllocation:
    study: str
    site: str
    subject_id: str
    stratum: str
    randomization_number: int
    arm: str
    randomized_at: datetime | None
    unblinded: bool
    stratum_corrected: str | None = None  # as corrected after randomization, if ever


def pooled_allocations(
    uow: UnitOfWork, principal: Principal, slugs: Sequence[str]
) -> list[PooledAllocation]:
    """Every allocation of those studies (each in its current mode), one per subject, for
    the common analysis; the caller must see every study named. Audited in each study."""
    wanted = list(dict.fromkeys(s.strip() for s in slugs if s.strip()))
    if not wanted:
        raise InvalidRequest("name at least one study: ?studies=iris-7a,iris-7b")
    rows: list[PooledAllocation] = []
    with uow:
        studies = {slug: _visible_study(uow, principal, slug) for slug in wanted}
        for slug, study in studies.items():
            mode = uow.studies.mode(slug)
            allocations = uow.lists.allocations(slug, mode)
            rows.extend(
                PooledAllocation(
                    study=slug,
                    site=subject.site,
                    subject_id=subject.subject_id,
                    stratum=_stratum(study, subject),
                    randomization_number=number,
                    arm=arm,
                    randomized_at=subject.randomized_at,
                    unblinded=subject.unblinded,
                    stratum_corrected=_stratum_corrected(study, subject),
                )
                for subject, arm, number in allocations
            )
            uow.record(
                AuditEvent(
                    action="allocations.pooled_export",
                    entity_type="study",
                    entity_id=slug,
                    study=slug,
                    after={"studies": wanted, "mode": mode, "subjects": len(allocations)},
                )
            )
        uow.commit()
    return rows


# --- Key rotation ----------------------------------------------------------------------------


def rotate_kek(uow: UnitOfWork, new_kek_id: str) -> list[RewrappedKey]:
    """Re-wrap every study data key (and re-seal every secret sealed under a KEK itself)
    under the new KEK in one transaction, audited in each study's chain and in the system
    chain. The data keys, hence every record sealed under them, stay."""
    with uow:
        rewrapped = uow.blinding.rewrap_deks(new_kek_id)
        resealed = uow.blinding.reseal_user_secrets(new_kek_id)
        by_study: dict[str, list[RewrappedKey]] = {}
        for key in rewrapped:
            by_study.setdefault(key.study, []).append(key)
        for slug, keys in by_study.items():
            uow.record(
                AuditEvent(
                    action="study_key.rewrapped",
                    entity_type="study_key",
                    entity_id=slug,
                    study=slug,
                    before={"kek_ids": sorted({k.old_kek_id for k in keys})},
                    after={"kek_id": new_kek_id, "dek_versions": [k.dek_version for k in keys]},
                )
            )
        uow.record(
            AuditEvent(
                action="kek.rotated",
                entity_type="kek",
                entity_id=new_kek_id,
                before={"kek_ids": sorted({k.old_kek_id for k in rewrapped})},
                after={
                    "kek_id": new_kek_id,
                    "studies": sorted(by_study),
                    "user_secrets": resealed,
                },
            )
        )
        uow.commit()
    return rewrapped


def reseal_legacy(uow: UnitOfWork) -> list[ResealedStudy]:
    """Seal again, padded to their kind's size, every legacy (unpadded) envelope of every
    study, in one transaction, with one audit event per study that had any (the counts by
    column, never a value). Idempotent: a second run finds nothing and records nothing."""
    with uow:
        resealed = uow.blinding.reseal_legacy()
        for done in resealed:
            uow.record(
                AuditEvent(
                    action="sealed.padded",
                    entity_type="study",
                    entity_id=done.study,
                    study=done.study,
                    after={"resealed": dict(done.counts)},
                )
            )
        uow.commit()
    return resealed
