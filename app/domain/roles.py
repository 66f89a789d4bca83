"""The roles of the trial, as the contract names them on the command line and in tokens."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    EDC = "edc"
    INVESTIGATOR = "investigator"
    PHARMACIST = "pharmacist"
    UNBLINDED_STATISTICIAN = "unblinded_statistician"
    SAFETY_OFFICER = "safety_officer"
    SUPPLY_MANAGER = "supply_manager"
    ADMIN = "admin"
    AUDITOR = "auditor"

    @property
    def site_scoped(self) -> bool:
        """Site roles act only at the sites they are granted."""
        return self in SITE_ROLES

    @property
    def sees_arms(self) -> bool:
        """Only these roles may ever receive an arm (and then only under their rules)."""
        return self in UNBLINDED_ROLES


SITE_ROLES = frozenset({Role.INVESTIGATOR, Role.PHARMACIST})
UNBLINDED_ROLES = frozenset({Role.UNBLINDED_STATISTICIAN, Role.SAFETY_OFFICER})
# Who may break the code for one subject, if the study's policy names them.
UNBLINDING_CAPABLE = frozenset(
    {Role.UNBLINDED_STATISTICIAN, Role.SAFETY_OFFICER, Role.INVESTIGATOR}
)
