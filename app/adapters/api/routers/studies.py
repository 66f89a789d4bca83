"""Study definitions as the integrations see them: arms by label, visits, sites, strata.
Never the kit types nor the dispensing table."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from app.adapters.api.auth import require
from app.adapters.api.deps import get_container
from app.adapters.api.routing import ThreadPoolRoute
from app.adapters.api.schemas import (
    ArmRead,
    EligibilityQuestionRead,
    FactorRead,
    LevelRead,
    SiteRead,
    StudyList,
    StudyRead,
    StudyStatusRead,
    StudySummaryRead,
    UnscheduledRead,
    VisitRead,
)
from app.bootstrap import Container
from app.domain.access import Action, Principal
from app.services import studies as study_service
from app.services.ports import StoredStudy

router = APIRouter(prefix="/api/v1", tags=["studies"], route_class=ThreadPoolRoute)
ReadStudies = Annotated[Principal, Depends(require(Action.STUDY_READ))]


def _summary(stored: StoredStudy) -> StudySummaryRead:
    s = stored.study
    return StudySummaryRead(slug=s.slug, title=s.title, protocol=s.protocol, version=stored.version)


def _detail(stored: StoredStudy, status: study_service.StudyStatus) -> StudyRead:
    s = stored.study
    return StudyRead(
        **_summary(stored).model_dump(),
        description=s.description,
        arms=[ArmRead(code=a.code, label=a.label) for a in s.arms],
        stratification_factors=[
            FactorRead(
                code=f.code,
                label=f.label,
                levels=[LevelRead(code=lv.code, label=lv.label) for lv in f.levels],
            )
            for f in s.factors
        ],
        stratify_by_site=s.randomization.stratify_by_site,
        randomization_method=s.randomization.method.value,
        sites=[
            SiteRead(
                code=x.code, name=x.name, country=x.country, active=x.active, timezone=x.timezone
            )
            for x in s.sites
        ],
        visits=[
            VisitRead(
                code=v.code, day=v.day, window_before=v.window_before, window_after=v.window_after
            )
            for v in s.visits
        ],
        pooled_with=list(s.pooled_with),
        discontinuation_reasons=list(s.discontinuation_reasons),
        screen_failure_reasons=list(s.screen_failure_reasons),
        rescreening=s.rescreening,
        max_rescreens=s.max_rescreens,
        eligibility=[
            EligibilityQuestionRead(code=q.code, text=q.text, text_fr=q.translations.get("fr"))
            for q in s.eligibility
        ],
        unscheduled=None
        if s.unscheduled is None
        else UnscheduledRead(
            kit_rule=s.unscheduled.kit_rule, max_per_subject=s.unscheduled.max_per_subject
        ),
        status=StudyStatusRead(
            mode=status.mode,
            list_version=status.list_version,
            strata_running_low=list(status.strata_running_low),
            strata_exhausted=list(status.strata_exhausted),
        ),
    )


@router.get(
    "/studies",
    response_model=StudyList,
    operation_id="list_studies",
    summary="The studies the token may see",
)
def list_studies(
    principal: ReadStudies, container: Annotated[Container, Depends(get_container)]
) -> StudyList:
    stored = study_service.list_studies(container.uow(principal.actor), visible=principal.studies)
    return StudyList(studies=[_summary(s) for s in stored])


@router.get(
    "/studies/{study}",
    response_model=StudyRead,
    operation_id="get_study",
    summary="A study's arms (labels), visits, sites and stratification factors",
)
def get_study(
    study: str, principal: ReadStudies, container: Annotated[Container, Depends(get_container)]
) -> StudyRead:
    found = study_service.get_study(container.uow(principal.actor), study, principal.studies)
    status = study_service.study_status(container.uow(principal.actor), study)
    return _detail(found, status)
