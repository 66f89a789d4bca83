"""What a page says when a use case refuses: by the error's stable code, in the user's
language, with what to do next. Never the error's own detail (English, for the API)."""

from __future__ import annotations

from collections.abc import Callable

from app.domain.clients import Throttled
from app.domain.errors import DomainError


class InvalidInput(DomainError):
    """A form field is not valid (checked before any use case runs)."""

    code = "validation_error"


def N_(message: str) -> str:  # noqa: N802 - the name gettext tools look for
    """Marks a message for extraction; translated when shown."""
    return message


BY_CODE: dict[str, str] = {
    "subject_already_registered": N_(
        "This subject ID is registered already. Find the subject to see its status."
    ),
    "subject_id_unavailable": N_(
        "This subject ID cannot be registered at your sites. Check the ID, or choose another."
    ),
    "subject_already_randomized": N_(
        "This subject is randomized already; a subject is randomized only once. "
        "Nothing was changed."
    ),
    "subject_not_found": N_(
        "No subject with this ID at your sites. Check the ID, or register the subject first."
    ),
    "subject_not_randomized": N_("The subject is not randomized. Randomize the subject first."),
    "subject_screen_failed": N_(
        "This subject is a screen failure and is never randomized. To screen the person again, "
        "register a new subject ID as a re-screening, if the study allows it."
    ),
    "subject_already_ended": N_(
        "This subject has ended already (completed, discontinued or screen failure). Nothing "
        "was changed."
    ),
    "invalid_discontinuation_reason": N_(
        "Choose one of the reasons; for Other, say which in the details. Nothing was changed."
    ),
    "invalid_screen_failure_reason": N_(
        "Choose one of the reasons; for Other, say which in the details. Nothing was changed."
    ),
    "rescreening_not_allowed": N_("The study does not allow re-screening. Nothing was changed."),
    "rescreen_of_not_found": N_(
        "No subject with the earlier ID at this site among yours. Check the earlier subject ID "
        "and the site."
    ),
    "rescreen_of_not_screen_failed": N_(
        "The earlier subject is not a screen failure: only a screen failure is re-screened."
    ),
    "subject_already_rescreened": N_(
        "The earlier subject was re-screened already. Give the ID of its latest re-screening."
    ),
    "rescreen_limit_reached": N_(
        "This person was re-screened as many times as the study allows. Nothing was changed."
    ),
    "eligibility_not_confirmed": N_(
        "Every eligibility statement must be confirmed before the randomization. Nothing was "
        "changed."
    ),
    "stratum_unchanged": N_("This is the subject's answer already. Nothing was changed."),
    "invalid_correction": N_("Say why the answer was wrong. Nothing was changed."),
    "stratum_exhausted": N_(
        "No place is left in this subject's stratum. Nothing was changed: call the unblinded "
        "statistician, who can extend the list."
    ),
    "insufficient_supply": N_(
        "The site does not have enough usable kits. Nothing was changed: confirm the receipt "
        "of the shipments waiting at the pharmacy, or call the supply manager."
    ),
    "site_not_active": N_("This site is not active in the study. Call the study manager."),
    "site_enrolment_closed": N_(
        "This site is closed to enrolment: nobody is randomized there. Nothing was changed; "
        "the subjects on treatment are still dispensed to."
    ),
    "enrolment_cap_reached": N_(
        "The enrolment cap is reached: nobody more is randomized there. Nothing was changed; "
        "call the study manager."
    ),
    "site_enrolment_already_closed": N_("This site is closed to enrolment already."),
    "site_enrolment_already_open": N_("This site is open to enrolment already."),
    "reason_required": N_("Give a reason, then send again."),
    "invalid_site": N_("This site is not a site of the study. Choose one of the list."),
    "site_not_found": N_("No such site among yours. Choose one of the list."),
    "invalid_stratum": N_(
        "A stratification answer is missing or unknown. Answer every question and send again."
    ),
    "forbidden": N_(
        "Your role or your sites do not allow this. Ask the study manager if you need it."
    ),
    "study_locked": N_(
        "The study is locked: nothing can be registered, randomized or dispensed any more."
    ),
    "study_not_locked": N_("The study is not locked yet."),
    "randomization_list_missing": N_(
        "The study has no randomization list yet. Call the unblinded statistician."
    ),
    "mode_mismatch": N_(
        "The subject was registered in the other mode (test or live). Call the study manager."
    ),
    "invalid_kit_number": N_(
        "This is not a valid kit number. Check the 8 digits on the label and type them again."
    ),
    "kit_not_found": N_("No kit with this number at your sites. Check the number on the label."),
    "shipment_not_found": N_("No such shipment to your sites. Choose one of the list."),
    "shipment_already_received": N_(
        "This shipment was received already. Nothing was changed; see the inventory."
    ),
    "kit_not_in_shipment": N_(
        "A kit marked damaged is not in this shipment. Tick only the kits of the shipment."
    ),
    "invalid_kit_transition": N_(
        "A kit cannot change that way in its present status. Look the kit up to see its status."
    ),
    "visit_not_allowed": N_(
        "This visit cannot be dispensed today: it is out of order or outside its window. "
        "Check the visit."
    ),
    "visit_already_dispensed": N_(
        "The kits of this visit were handed out already. See the subject's dispensations."
    ),
    "visit_already_recorded": N_(
        "This visit is recorded as missed or its dose as held; it is not dispensed. "
        "Nothing was changed."
    ),
    "visit_reason_required": N_("Give a reason. Nothing was changed."),
    "unscheduled_not_allowed": N_(
        "No unscheduled dispensation is possible for this subject now: the study does not "
        "allow one, or not one more, or no visit was dispensed yet. Nothing was changed."
    ),
    "weight_out_of_range": N_(
        "The weight is outside the study's weight bands. Check the weight, in kilograms."
    ),
    "visit_not_dispensed": N_(
        "No kit was handed out to this subject at this visit. Choose a visit listed under "
        "Dispensations."
    ),
    "kit_not_dispensed_at_visit": N_(
        "This kit is not one the subject holds from this visit. Check the kit number and the "
        "visit under Dispensations."
    ),
    "no_kit_to_quarantine": N_(
        "None of these kits can be quarantined (dispensed or written off already)."
    ),
    "excursion_not_found": N_("No temperature excursion with this code. Check the code."),
    "excursion_already_resolved": N_("This excursion was resolved already. Nothing was changed."),
    "invalid_supply_request": N_("The form is incomplete. Fill in every field and send again."),
    "supply_busy": N_("Other requests were taking the same kits. Send the form again."),
    "token_not_fresh": N_(
        "Confirm your password and code again, then send the request within a few minutes."
    ),
    "validation_error": N_(
        "Some answers are missing or not valid. Correct the fields and send again."
    ),
    "login_failed": N_(
        "The e-mail address, password or code is not right. Check them and try again."
    ),
    "weak_password": N_(
        "Choose a password of at least 12 characters that is not your e-mail address."
    ),
    "invalid_user_request": N_("The request is not valid. Check the fields and send again."),
    "session_invalid": N_("Your session has ended. Log in again."),
    "wrong_randomization_method": N_("The study does not use this randomization method."),
    "randomization_list_in_use": N_("The list has allocations already; it can only be extended."),
}
KIT_STATUS: dict[str, str] = {
    "at_depot": N_("At the depot"),
    "in_transit": N_("In transit"),
    "at_site": N_("At the site, usable"),
    "dispensed": N_("Dispensed"),
    "damaged": N_("Damaged"),
    "lost": N_("Lost"),
    "quarantined": N_("In quarantine"),
    "expired": N_("Expired"),
    "returned": N_("Returned"),
    "destroyed": N_("Destroyed"),
}
GENERIC = N_("The request was refused (%(code)s). Check the form; if it goes on, quote this code.")
THROTTLED = N_(
    "Too many failed attempts. Wait %(minutes)s minutes and try again, or ask the "
    "administrator to reset your access."
)


def error_message(exc: DomainError, gettext: Callable[[str], str]) -> str:
    if isinstance(exc, Throttled):
        return gettext(THROTTLED) % {"minutes": max(1, -(-exc.retry_after // 60))}
    message = BY_CODE.get(exc.code)
    if message is None:
        return gettext(GENERIC) % {"code": exc.code}
    return gettext(message)
