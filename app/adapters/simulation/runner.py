"""Run both studies day by day through the HTTP API, as the EDC systems, the pharmacists,
an investigator and the statistician would, and report balance, supply and latency.

Each simulated day: the clock moves one day; pharmacists receive the shipments in transit
(now and then with a damaged kit; with `transit_days`, only shipments seen in transit that
many days before: a courier's extra days); new subjects are registered and randomized with
their weight (the first visit's kits come with the randomization); every subject due for a
visit is dosed with a weight that drifts a little; some subjects die or withdraw (a
discontinuation through the API, with the reason), the others complete after their last
visit; on one day an investigator breaks the code for one subject. With `life` (the
default), a trial's life at the sites too: some subjects fail screening (the study's first
is re-screened under a new id), visits are recorded missed or their dose held (the later
visits go on), one subject a study has a stratum corrected, and the supply manager closes
each study's last site to enrolment half way through enrollment (its subjects on treatment
are still dosed). At the end every subject's status is read back through the API
(`end_states`). Refusals for supply are counted as stock-outs and retried the next day (a
visit whose window closed meanwhile is recorded missed); a later visit (after the first)
refused for supply is also counted once per visit, for the rate of later-visit refusals.
Expired kits are read from the sites' inventories (the API has no depot inventory).

With `observe`, the runner also records what the site roles were told, in order, for the
leak analysis (app.adapters.simulation.leaks): every shipment received with each kit's lot
and expiry (looked up by the pharmacist), every dispensation with its kits, every refusal,
every subject's end.
"""

from __future__ import annotations

import csv
import io
import random
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import httpx

from app.adapters.simulation.leaks import (
    Observations,
    SeenDispensation,
    SeenEnd,
    SeenKit,
    SeenRecord,
    SeenRefusal,
    SeenShipment,
)
from app.adapters.simulation.service import Credentials, Setup, StudySetup


@dataclass
class SimSubject:
    study: str
    subject_id: str
    site: str
    weight: float
    strata: dict[str, str] = field(default_factory=dict)
    randomized_day: int | None = None
    next_visit: int = 0
    discontinued: bool = False  # ended (discontinued or completed) or never to be randomized


@dataclass
class Results:
    days: int = 0
    enrolled_by_day: dict[str, list[int]] = field(default_factory=dict)
    stock_by_day: dict[str, list[int]] = field(default_factory=dict)
    shipments_received: Counter[str] = field(default_factory=Counter)
    kits_received: Counter[str] = field(default_factory=Counter)
    kits_damaged: Counter[str] = field(default_factory=Counter)
    kits_dispensed: Counter[str] = field(default_factory=Counter)
    visits_dispensed: Counter[str] = field(default_factory=Counter)
    stock_outs: Counter[str] = field(default_factory=Counter)
    missed_visits: Counter[str] = field(default_factory=Counter)
    discontinued: Counter[str] = field(default_factory=Counter)
    completed: Counter[str] = field(default_factory=Counter)
    screen_failed: Counter[str] = field(default_factory=Counter)
    rescreened: Counter[str] = field(default_factory=Counter)
    held_doses: Counter[str] = field(default_factory=Counter)
    stratum_corrections: Counter[str] = field(default_factory=Counter)
    closed_sites: dict[str, list[str]] = field(default_factory=dict)  # study -> sites
    refused_at_closed_site: Counter[str] = field(default_factory=Counter)
    end_states: dict[str, Counter[str]] = field(default_factory=dict)  # study -> status -> n
    end_reasons: dict[str, Counter[str]] = field(default_factory=dict)  # study -> reason -> n
    unblinded: list[str] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    latency: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    allocations: list[dict[str, str]] = field(default_factory=list)
    later_visits: Counter[str] = field(default_factory=Counter)  # distinct, attempted
    later_visits_refused: Counter[str] = field(default_factory=Counter)  # insufficient_supply
    site_counts: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    observations: Observations | None = None

    def later_refusal_rate(self, study: str) -> float:
        attempted = self.later_visits[study]
        return self.later_visits_refused[study] / attempted if attempted else 0.0

    def expired_at_sites(self, study: str) -> int:
        """Kits expired at the study's sites, from the last inventory read."""
        return sum(c.get("expired", 0) for c in self.site_counts.get(study, {}).values())

    def left_at_sites(self, study: str) -> int:
        """Kits still usable at the study's sites at the end (the supply's overhead: every
        shipment carries every type alike, so a site accumulates the types its subjects
        happen to use less), from the last inventory read."""
        return sum(c.get("at_site", 0) for c in self.site_counts.get(study, {}).values())


class Api:
    """An HTTP client that gets and refreshes tokens and times every call by endpoint."""

    def __init__(self, base_url: str, results: Results) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=30)
        self.results = results
        self._tokens: dict[str, tuple[str, float]] = {}

    def token(self, creds: Credentials, fresh: bool = False) -> str:
        cached = self._tokens.get(creds.client_id)
        if cached and not fresh and cached[1] > time.monotonic() + 30:
            return cached[0]
        response = self.call(
            "POST",
            "/oauth/token",
            None,
            data={
                "grant_type": "client_credentials",
                "client_id": creds.client_id,
                "client_secret": creds.client_secret,
            },
        )
        body = response.json()
        self._tokens[creds.client_id] = (
            body["access_token"],
            time.monotonic() + body["expires_in"],
        )
        return str(body["access_token"])

    def call(
        self,
        method: str,
        template: str,
        creds: Credentials | None,
        fresh: bool = False,
        **kwargs: Any,
    ) -> httpx.Response:
        params = kwargs.pop("path", {})
        headers = kwargs.pop("headers", {})
        if creds is not None:
            headers["Authorization"] = f"Bearer {self.token(creds, fresh)}"
        started = time.perf_counter()
        response = self.http.request(method, template.format(**params), headers=headers, **kwargs)
        self.results.latency[f"{method} {template}"].append(time.perf_counter() - started)
        if response.status_code >= 500:
            self.results.errors[f"{method} {template} {response.status_code}"] += 1
        return response


class Simulation:
    def __init__(
        self,
        setup: Setup,
        subjects_per_study: int,
        enrollment_days: int,
        seed: int,
        progress: Callable[[int, int], None] | None = None,
        observe: bool = False,
        transit_days: int = 0,
        life: bool = True,
    ) -> None:
        self.setup = setup
        self.results = Results(observations=Observations() if observe else None)
        self.day = 0
        self.transit_days = transit_days
        self.life = life  # screen failures, missed and held visits, a correction, a closure
        self._in_transit_since: dict[tuple[str, str], int] = {}
        self._later_attempted: set[tuple[str, str, str]] = set()
        self._later_refused: set[tuple[str, str, str]] = set()
        self.api = Api(setup.url, self.results)
        self.rng = random.Random(seed)
        self.subjects: list[SimSubject] = []
        self.enrollment_days = enrollment_days
        self.progress = progress
        last_visit = max(day for s in setup.studies.values() for _, day in s.visits)
        self.total_days = enrollment_days + last_visit + 2
        self.arrivals: dict[int, list[str]] = defaultdict(list)
        for slug in setup.studies:
            for _ in range(subjects_per_study):
                self.arrivals[self.rng.randrange(enrollment_days)].append(slug)
        self.unblind_day = enrollment_days // 2 + 5
        self.close_day = enrollment_days // 2  # the supply manager closes one site a study
        self.correct_from = enrollment_days // 3  # then corrects one subject's stratum
        self.closed: dict[str, str] = {}
        self.corrected: set[str] = set()
        self.rescreened: set[str] = set()

    # --- a day -----------------------------------------------------------------------------

    def run(self) -> Results:
        for day in range(self.total_days):
            self.day = day
            if day:
                self.api.call(
                    "POST",
                    "/api/v1/simulation/clock",
                    self.setup.admin,
                    json={"days": 1},
                )
            for study in self.setup.studies.values():
                self.receive_shipments(study)
            if day == self.close_day and self.life:
                self.close_a_site()
            for slug in self.arrivals.get(day, []):
                self.enroll(self.setup.studies[slug], day)
            self.retry_waiting(day)
            self.dose(day)
            if day == self.unblind_day:
                self.emergency_unblinding()
            self.sample(day)
            if self.progress:
                self.progress(day + 1, self.total_days)
        self.results.days = self.total_days
        self.export()
        self.read_end_states()
        return self.results

    def receive_shipments(self, study: StudySetup) -> None:
        for site, creds in study.pharmacists.items():
            response = self.api.call(
                "GET",
                "/api/v1/studies/{study}/shipments",
                creds,
                path={"study": study.slug},
                params={"site_id": site},
            )
            if response.status_code != 200:
                continue
            for shipment in response.json()["shipments"]:
                if shipment["status"] != "in_transit":
                    continue
                since = self._in_transit_since.setdefault(
                    (study.slug, shipment["shipment_id"]), self.day
                )
                if self.day - since < self.transit_days:
                    continue
                damaged = []
                if shipment["kit_numbers"] and self.rng.random() < 0.05:
                    damaged = [self.rng.choice(shipment["kit_numbers"])]
                receipt = self.api.call(
                    "POST",
                    "/api/v1/studies/{study}/shipments/{shipment}/receipt",
                    creds,
                    path={"study": study.slug, "shipment": shipment["shipment_id"]},
                    json={"damaged_kit_numbers": damaged},
                )
                if receipt.status_code in (200, 201):
                    self.observe_receipt(study, site, creds, receipt.json(), damaged)
                    self.results.shipments_received[study.slug] += 1
                    self.results.kits_received[study.slug] += len(shipment["kit_numbers"])
                    self.results.kits_damaged[study.slug] += len(damaged)

    def enroll(self, study: StudySetup, day: int) -> None:
        number = sum(1 for s in self.subjects if s.study == study.slug) + 1
        open_sites = [site for site in study.sites if self.closed.get(study.slug) != site]
        subject = SimSubject(
            study=study.slug,
            subject_id=f"{study.slug.upper()}-{number:04d}",
            site=self.rng.choice(open_sites),
            weight=round(self.rng.uniform(48, 125), 1),
            strata={factor: self.rng.choice(levels) for factor, levels in study.factors.items()},
        )
        if not self.register(study, subject):
            return
        if self.life and self.rng.random() < 0.06:
            self.screen_fail(study, subject, day)
            return
        self.randomize(subject, day)

    def register(self, study: StudySetup, subject: SimSubject, rescreen_of: str = "") -> bool:
        body: dict[str, Any] = {
            "subject_id": subject.subject_id,
            "site_id": subject.site,
            "strata": subject.strata,
        }
        if rescreen_of:
            body["rescreen_of"] = rescreen_of
        response = self.api.call(
            "POST",
            "/api/v1/studies/{study}/subjects",
            study.edc,
            path={"study": study.slug},
            json=body,
        )
        if response.status_code != 201:
            self.results.errors[f"register {response.json().get('code')}"] += 1
            return False
        self.subjects.append(subject)
        return True

    def screen_fail(
        self,
        study: StudySetup,
        subject: SimSubject,
        day: int,
        reason: tuple[str, str] | None = None,
    ) -> None:
        """The subject fails screening; the study's first is re-screened under a new id."""
        code, detail = reason or (
            self.rng.choice(
                ["inclusion_criterion_not_met", "exclusion_criterion_met", "consent_not_obtained"]
            ),
            "",
        )
        response = self.api.call(
            "POST",
            "/api/v1/studies/{study}/subjects/{subject}/screen-failure",
            study.investigators[subject.site],
            path={"study": study.slug, "subject": subject.subject_id},
            json={"reason": code, "detail": detail or None},
            headers={"Idempotency-Key": f"screen-{subject.subject_id}"},
        )
        if response.status_code != 200:
            self.results.errors[f"screen failure {response.json().get('code')}"] += 1
            return
        subject.discontinued = True
        self.results.screen_failed[study.slug] += 1
        if study.slug in self.rescreened or reason is not None:
            return
        self.rescreened.add(study.slug)
        again = SimSubject(
            study=study.slug,
            subject_id=f"{subject.subject_id}-R1",
            site=subject.site,
            weight=subject.weight,
            strata=dict(subject.strata),
        )
        if self.register(study, again, rescreen_of=subject.subject_id):
            self.results.rescreened[study.slug] += 1
            self.randomize(again, day)

    def close_a_site(self) -> None:
        """The supply manager closes each study's last site to enrolment (it keeps dosing and
        being resupplied for its subjects on treatment)."""
        for study in self.setup.studies.values():
            if len(study.sites) < 2:
                continue
            site = study.sites[-1]
            response = self.api.call(
                "POST",
                "/api/v1/studies/{study}/sites/{site}/enrolment-closure",
                self.setup.supply_manager,
                path={"study": study.slug, "site": site},
                json={"reason": "the site reached its recruitment target"},
                headers={"Idempotency-Key": f"close-{study.slug}-{site}"},
            )
            if response.status_code != 200:
                self.results.errors[f"close site {response.json().get('code')}"] += 1
                continue
            self.closed[study.slug] = site
            self.results.closed_sites.setdefault(study.slug, []).append(site)

    def correct_stratum(self, study: StudySetup, subject: SimSubject) -> None:
        """An investigator corrects a factor entered wrong; the allocation stays."""
        factor, levels = next(iter(study.factors.items()))
        level = next(lv for lv in levels if lv != subject.strata[factor])
        response = self.api.call(
            "POST",
            "/api/v1/studies/{study}/subjects/{subject}/stratum-correction",
            study.investigators[subject.site],
            path={"study": study.slug, "subject": subject.subject_id},
            json={"factor": factor, "level": level, "reason": "entered on the wrong line"},
            headers={"Idempotency-Key": f"correct-{subject.subject_id}"},
        )
        if response.status_code != 200:
            self.results.errors[f"stratum correction {response.json().get('code')}"] += 1
            return
        self.corrected.add(study.slug)
        self.results.stratum_corrections[study.slug] += 1

    def randomize(self, subject: SimSubject, day: int) -> None:
        study = self.setup.studies[subject.study]
        response = self.api.call(
            "POST",
            "/api/v1/studies/{study}/subjects/{subject}/randomization",
            study.edc,
            path={"study": study.slug, "subject": subject.subject_id},
            json={"weight_kg": subject.weight},
            headers={"Idempotency-Key": f"rand-{subject.subject_id}"},
        )
        if response.status_code == 201:
            subject.randomized_day = day
            subject.next_visit = 1
            if (
                self.life
                and day >= self.correct_from
                and study.slug not in self.corrected
                and study.factors
            ):
                self.correct_stratum(study, subject)
            body = response.json()
            if body.get("dispensation"):
                self.observe_dispensation(subject, body["dispensation"], 0)
            kits = len((body.get("dispensation") or {}).get("kits", []))
            self.results.kits_dispensed[study.slug] += kits
            self.results.visits_dispensed[study.slug] += 1
        elif response.status_code == 409 and response.json().get("code") == "insufficient_supply":
            self.results.stock_outs[study.slug] += 1
            self.observe_refusal(subject, study.visits[0][0], 0, "insufficient_supply")
        elif response.status_code == 409 and response.json().get("code") == "site_enrolment_closed":
            # Waiting for kits when the site closed: recorded as a screen failure.
            self.results.refused_at_closed_site[study.slug] += 1
            self.screen_fail(study, subject, day, ("other", "site closed to enrolment"))
        else:
            self.results.errors[f"randomize {response.json().get('code')}"] += 1

    def retry_waiting(self, day: int) -> None:
        for subject in self.subjects:
            if subject.randomized_day is None and not subject.discontinued:
                self.randomize(subject, day)

    def dose(self, day: int) -> None:
        for subject in self.subjects:
            if subject.randomized_day is None or subject.discontinued:
                continue
            study = self.setup.studies[subject.study]
            if subject.next_visit >= len(study.visits):
                continue
            code, visit_day = study.visits[subject.next_visit]
            due = subject.randomized_day + visit_day
            if day < due:
                continue
            draw = self.rng.random() if self.life else 1.0
            if draw < 0.05:
                self.record_visit(study, subject, code, "missed", "in theatre for source control")
                continue
            if draw < 0.07:
                self.record_visit(study, subject, code, "held", "haemodynamically unstable")
                continue
            subject.weight = round(subject.weight * self.rng.uniform(0.98, 1.02), 1)
            visit_key = (study.slug, subject.subject_id, code)
            if visit_key not in self._later_attempted:
                self._later_attempted.add(visit_key)
                self.results.later_visits[study.slug] += 1
            response = self.api.call(
                "POST",
                "/api/v1/studies/{study}/subjects/{subject}/dispensations",
                study.pharmacists[subject.site],
                path={"study": study.slug, "subject": subject.subject_id},
                json={"visit": code, "weight_kg": subject.weight},
                headers={"Idempotency-Key": f"disp-{subject.subject_id}-{code}"},
            )
            if response.status_code == 201:
                self.observe_dispensation(subject, response.json(), subject.next_visit)
                self.results.kits_dispensed[study.slug] += len(response.json()["kits"])
                self.results.visits_dispensed[study.slug] += 1
                subject.next_visit += 1
                self.after_dose(study, subject)
                continue
            code_text = response.json().get("code")
            self.observe_refusal(subject, code, subject.next_visit, str(code_text))
            if code_text == "insufficient_supply":
                self.results.stock_outs[study.slug] += 1
                if visit_key not in self._later_refused:
                    self._later_refused.add(visit_key)
                    self.results.later_visits_refused[study.slug] += 1
            elif code_text == "visit_not_allowed":  # its window closed while the site waited
                self.record_visit(study, subject, code, "missed", "window closed waiting for kits")
            else:
                self.results.errors[f"dispense {code_text}"] += 1

    def record_visit(
        self, study: StudySetup, subject: SimSubject, visit: str, kind: str, reason: str
    ) -> None:
        """The visit is recorded missed (or its dose held); the later visits go on."""
        response = self.api.call(
            "POST",
            "/api/v1/studies/{study}/subjects/{subject}/visits/{visit}/" + kind,
            study.investigators[subject.site],
            path={"study": study.slug, "subject": subject.subject_id, "visit": visit},
            json={"reason": reason},
            headers={"Idempotency-Key": f"{kind}-{subject.subject_id}-{visit}"},
        )
        if response.status_code != 201:
            self.results.errors[f"{kind} visit {response.json().get('code')}"] += 1
            subject.discontinued = True
            return
        obs = self.results.observations
        if obs is not None:
            obs.records.append(
                SeenRecord(
                    seq=obs.next_seq(),
                    study=study.slug,
                    site=subject.site,
                    subject=subject.subject_id,
                    visit=visit,
                    at=datetime.fromisoformat(response.json()["recorded_at"]),
                )
            )
        if kind == "missed":
            self.results.missed_visits[study.slug] += 1
        else:
            self.results.held_doses[study.slug] += 1
        subject.next_visit += 1
        if subject.next_visit >= len(study.visits):
            self.end(study, subject, "completion", {})

    def after_dose(self, study: StudySetup, subject: SimSubject) -> None:
        """After a dose: the subject may die or withdraw, or completes after the last visit."""
        draw = self.rng.random()
        if draw < 0.01:
            self.end(study, subject, "discontinuation", {"reason": "death"})
        elif draw < 0.02:
            self.end(
                study,
                subject,
                "discontinuation",
                {"reason": "consent_withdrawn", "detail": "family asked to stop"},
            )
        elif subject.next_visit >= len(study.visits):
            self.end(study, subject, "completion", {})

    def end(self, study: StudySetup, subject: SimSubject, how: str, body: dict[str, str]) -> None:
        response = self.api.call(
            "POST",
            "/api/v1/studies/{study}/subjects/{subject}/" + how,
            study.investigators[subject.site],
            path={"study": study.slug, "subject": subject.subject_id},
            json=body,
            headers={"Idempotency-Key": f"{how}-{subject.subject_id}"},
        )
        if response.status_code != 200:
            self.results.errors[f"{how} {response.json().get('code')}"] += 1
            return
        subject.discontinued = True
        obs = self.results.observations
        if obs is not None:
            obs.ends.append(
                SeenEnd(
                    seq=obs.next_seq(),
                    study=study.slug,
                    site=subject.site,
                    subject=subject.subject_id,
                    at=datetime.fromisoformat(response.json()["ended_at"]),
                )
            )
        if how == "completion":
            self.results.completed[study.slug] += 1
        else:
            self.results.discontinued[study.slug] += 1
            reasons = self.results.end_reasons.setdefault(study.slug, Counter())
            reasons[body["reason"]] += 1

    def read_end_states(self) -> None:
        """Every subject's status as the API tells it at the end."""
        for subject in self.subjects:
            study = self.setup.studies[subject.study]
            response = self.api.call(
                "GET",
                "/api/v1/studies/{study}/subjects/{subject}",
                study.edc,
                path={"study": study.slug, "subject": subject.subject_id},
            )
            state = (
                str(response.json()["status"])
                if response.status_code == 200
                else f"unreadable {response.status_code}"
            )
            self.results.end_states.setdefault(study.slug, Counter())[state] += 1

    def emergency_unblinding(self) -> None:
        candidates = [s for s in self.subjects if s.randomized_day is not None]
        if not candidates:
            return
        subject = self.rng.choice(candidates)
        study = self.setup.studies[subject.study]
        response = self.api.call(
            "POST",
            "/api/v1/studies/{study}/subjects/{subject}/unblinding",
            study.investigators[subject.site],
            fresh=True,
            path={"study": study.slug, "subject": subject.subject_id},
            json={"reason": "suspected serious adverse reaction; treating physician must know"},
        )
        if response.status_code == 200:
            self.results.unblinded.append(subject.subject_id)
        else:
            self.results.errors[f"unblinding {response.json().get('code')}"] += 1

    def sample(self, day: int) -> None:
        for study in self.setup.studies.values():
            enrolled = sum(
                1 for s in self.subjects if s.study == study.slug and s.randomized_day is not None
            )
            self.results.enrolled_by_day.setdefault(study.slug, []).append(enrolled)
            for site in study.sites:
                response = self.api.call(
                    "GET",
                    "/api/v1/studies/{study}/sites/{site}/inventory",
                    self.setup.supply_manager,
                    path={"study": study.slug, "site": site},
                )
                if response.status_code == 200:
                    counts = response.json()["counts"]
                    self.results.site_counts.setdefault(study.slug, {})[site] = dict(counts)
                    available = int(counts.get("at_site", 0))
                    self.results.stock_by_day.setdefault(f"{study.slug} {site}", []).append(
                        available
                    )

    # --- what the site roles were told (observe=True) ---------------------------------------

    def observe_receipt(
        self,
        study: StudySetup,
        site: str,
        creds: Credentials,
        shipment: dict[str, Any],
        damaged: list[str],
    ) -> None:
        obs = self.results.observations
        if obs is None:
            return
        kits = []
        for number in shipment["kit_numbers"]:
            response = self.api.call(
                "GET",
                "/api/v1/studies/{study}/kits/{kit}",
                creds,
                path={"study": study.slug, "kit": number},
            )
            if response.status_code != 200:
                self.results.errors[f"kit lookup {response.status_code}"] += 1
                continue
            kits.append(_seen_kit(response.json()))
        received_at = shipment.get("received_at")
        obs.shipments.append(
            SeenShipment(
                seq=obs.next_seq(),
                study=study.slug,
                site=site,
                shipment_id=shipment["shipment_id"],
                kind=shipment["kind"],
                created_at=datetime.fromisoformat(shipment["created_at"]),
                received_at=datetime.fromisoformat(received_at) if received_at else None,
                kits=tuple(kits),
                damaged=tuple(damaged),
            )
        )

    def observe_dispensation(
        self, subject: SimSubject, body: dict[str, Any], visit_index: int
    ) -> None:
        obs = self.results.observations
        if obs is None:
            return
        obs.dispensations.append(
            SeenDispensation(
                seq=obs.next_seq(),
                study=subject.study,
                site=subject.site,
                subject=subject.subject_id,
                visit=body["visit"],
                visit_index=visit_index,
                at=datetime.fromisoformat(body["dispensed_at"]),
                kits=tuple(_seen_kit(k) for k in body["kits"]),
            )
        )

    def observe_refusal(self, subject: SimSubject, visit: str, visit_index: int, code: str) -> None:
        obs = self.results.observations
        if obs is None:
            return
        obs.refusals.append(
            SeenRefusal(
                seq=obs.next_seq(),
                study=subject.study,
                site=subject.site,
                subject=subject.subject_id,
                visit=visit,
                visit_index=visit_index,
                code=code,
                day=self.day,
            )
        )

    def export(self) -> None:
        response = self.api.call(
            "GET",
            "/api/v1/pooled/allocations",
            self.setup.statistician,
            params={"studies": ",".join(self.setup.studies)},
        )
        if response.status_code == 200:
            self.results.allocations = list(csv.DictReader(io.StringIO(response.text)))
        else:
            self.results.errors[f"pooled export {response.status_code}"] += 1


def _seen_kit(body: dict[str, Any]) -> SeenKit:
    return SeenKit(str(body["kit_number"]), str(body["lot"]), date.fromisoformat(body["expiry"]))


def latency_rows(results: Results) -> list[tuple[str, int, float, float, float]]:
    """(endpoint, calls, p50 ms, p99 ms, max ms), slowest p99 first."""
    rows = []
    for endpoint, samples in results.latency.items():
        ordered = sorted(samples)
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        rows.append(
            (
                endpoint,
                len(ordered),
                statistics.median(ordered) * 1000,
                p99 * 1000,
                ordered[-1] * 1000,
            )
        )
    return sorted(rows, key=lambda r: -r[3])


def balance_rows(results: Results) -> list[tuple[str, str, dict[str, int]]]:
    """(study, stratum, counts by arm) from the statistician's export."""
    table: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for row in results.allocations:
        table[(row["study"], row["stratum"])][row["arm"]] += 1
    return [(study, stratum, dict(counts)) for (study, stratum), counts in sorted(table.items())]
