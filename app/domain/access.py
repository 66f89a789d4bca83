"""Who may do what: one table from role to allowed actions, read by the API's single
authorization dependency, by the OpenAPI document and by `iwrs permissions`.

Scope is the other half: every role acts only in its studies (administrators in all), and
the site roles (investigator, pharmacist) only at their sites. Scope is applied in the
queries, so a record outside it is simply not found.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from app.domain.audit import Actor
from app.domain.roles import Role


class Action(StrEnum):
    STUDY_READ = "study:read"
    SUBJECT_REGISTER = "subject:register"  # registration, re-screening, stratum correction
    SUBJECT_RANDOMIZE = "subject:randomize"
    SUBJECT_READ = "subject:read"
    SUBJECT_END = "subject:end"  # discontinuation, completion and screen failure
    DISPENSE = "dispensation:create"  # scheduled visits and unscheduled dispensations
    VISIT_RECORD = "visit:record"  # a visit missed or its dose held, with a reason
    KIT_READ = "kit:read"
    INVENTORY_READ = "inventory:read"
    SHIPMENT_READ = "shipment:read"
    SHIPMENT_RECEIVE = "shipment:receive"
    EXCURSION_REPORT = "excursion:report"
    SUPPLY_MANAGE = "supply:manage"
    UNBLIND = "subject:unblind"
    ARM_READ = "subject:arm_read"  # investigators, own site, once the study is locked
    LIST_READ = "randomization_list:read"
    LIST_GENERATE = "randomization_list:generate"
    POOLED_EXPORT = "pooled:export"
    STUDY_LOCK = "study:lock"
    AUDIT_READ = "audit:read"
    SIMULATION_CLOCK = "simulation:clock"  # only on a service started by `iwrs simulate`
    USER_MANAGE = "user:manage"  # web users on the pages: list, create, disable
    ENROLMENT_READ = "enrolment:read"  # counts of randomized subjects, caps, sites' state
    ENROLMENT_MANAGE = "enrolment:manage"  # caps; closing and reopening a site's enrolment
    SITE_ACTIVATE = "site:activate"  # activation (initial shipment) and deactivation


PERMISSIONS: Mapping[Role, frozenset[Action]] = {
    Role.EDC: frozenset(
        {
            Action.STUDY_READ,
            Action.SUBJECT_REGISTER,
            Action.SUBJECT_RANDOMIZE,
            Action.SUBJECT_READ,
            Action.SUBJECT_END,
            Action.DISPENSE,
            Action.VISIT_RECORD,
        }
    ),
    Role.INVESTIGATOR: frozenset(
        {
            Action.STUDY_READ,
            Action.SUBJECT_REGISTER,
            Action.SUBJECT_RANDOMIZE,
            Action.SUBJECT_READ,
            Action.SUBJECT_END,
            Action.DISPENSE,
            Action.VISIT_RECORD,
            Action.KIT_READ,
            Action.UNBLIND,  # where the study's unblinding policy names investigators
            Action.ARM_READ,
        }
    ),
    Role.PHARMACIST: frozenset(
        {
            Action.STUDY_READ,
            Action.SUBJECT_READ,
            Action.DISPENSE,
            Action.VISIT_RECORD,
            Action.KIT_READ,
            Action.INVENTORY_READ,
            Action.SHIPMENT_READ,
            Action.SHIPMENT_RECEIVE,
            Action.EXCURSION_REPORT,
        }
    ),
    Role.UNBLINDED_STATISTICIAN: frozenset(
        {
            Action.STUDY_READ,
            Action.UNBLIND,
            Action.LIST_READ,
            Action.LIST_GENERATE,
            Action.POOLED_EXPORT,
            Action.STUDY_LOCK,
        }
    ),
    Role.SAFETY_OFFICER: frozenset({Action.STUDY_READ, Action.UNBLIND}),
    Role.SUPPLY_MANAGER: frozenset(
        {
            Action.STUDY_READ,
            Action.KIT_READ,
            Action.INVENTORY_READ,
            Action.SHIPMENT_READ,
            Action.SUPPLY_MANAGE,
            Action.ENROLMENT_READ,
            Action.ENROLMENT_MANAGE,
            Action.SITE_ACTIVATE,
        }
    ),
    Role.ADMIN: frozenset(
        {
            Action.STUDY_READ,
            Action.AUDIT_READ,
            Action.SIMULATION_CLOCK,
            Action.USER_MANAGE,
            Action.ENROLMENT_READ,
            Action.ENROLMENT_MANAGE,
            Action.SITE_ACTIVATE,
        }
    ),
    Role.AUDITOR: frozenset({Action.STUDY_READ, Action.AUDIT_READ, Action.ENROLMENT_READ}),
}


def roles_allowed(action: Action) -> list[Role]:
    return [role for role in Role if action in PERMISSIONS[role]]


def permissions_markdown() -> str:
    """The table as Markdown (docs/permissions.md is this text; a test keeps them equal)."""
    roles = list(Role)
    lines = [
        "# Permissions",
        "",
        "Generated from `app/domain/access.py` by `iwrs permissions`; do not edit by hand.",
        "Every role acts only in its studies (admin: all); investigators and pharmacists",
        "only at their sites.",
        "",
        "| action | " + " | ".join(r.value for r in roles) + " |",
        "|---|" + "---|" * len(roles),
    ]
    for action in Action:
        cells = ["yes" if action in PERMISSIONS[r] else "" for r in roles]
        lines.append(f"| `{action.value}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: a client (or user), its role and its scope."""

    subject: str
    role: Role
    studies: frozenset[str] | None  # None: every study (administrators)
    sites: Mapping[str, frozenset[str]] = field(default_factory=dict)  # site roles only
    issued_at: datetime | None = None
    actor_id: str | None = None  # a web user's "user:<email>"; API clients: "client:<id>"

    @property
    def actor(self) -> Actor:
        return Actor(actor_id=self.actor_id or f"client:{self.subject}", role=self.role.value)

    def may(self, action: Action) -> bool:
        return action in PERMISSIONS[self.role]

    def sees_study(self, slug: str) -> bool:
        return self.studies is None or slug in self.studies

    def sites_in(self, slug: str) -> frozenset[str] | None:
        """The sites this caller may act at in a study; None means every site."""
        if not self.role.site_scoped:
            return None
        return self.sites.get(slug, frozenset())

    def sees_site(self, slug: str, site: str) -> bool:
        allowed = self.sites_in(slug)
        return self.sees_study(slug) and (allowed is None or site in allowed)
