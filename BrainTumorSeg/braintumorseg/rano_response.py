"""The reader's part of a RANO assessment: corticosteroids, clinical status, the time since radiotherapy and
confirmation scans, combined with the imaging category of a comparison into the response the criteria give.

Imaging cannot see these, so nothing here is guessed: what the reader has not entered leaves the response
provisional and says what is missing. Our reading of RANO 2.0 (Wen et al., J Clin Oncol 2023) and RANO 2010
(Wen et al., J Clin Oncol 2010) is in docs/rano.md. No imaging library: the panel reads it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .rano_results import COMPLETE, NOT_EVALUABLE, PARTIAL, PROGRESSION, STABLE

NOT_ENTERED = "not entered"
STEROIDS = (NOT_ENTERED, "none", "stable or decreased", "increased")  # compared with the baseline exam
CLINICAL_STATUS = (NOT_ENTERED, "improved", "stable", "worse")  # "worse": deterioration not due to other causes
CONFIRMATION = (NOT_ENTERED, "confirmed", "not confirmed")  # by a repeat scan at least 4 weeks later
PSEUDOPROGRESSION_WEEKS = 12.0  # after the end of radiotherapy: imaging progression needs a confirmation scan


@dataclass(frozen=True)
class ClinicalFindings:
    """What the reader adds; each field may stay 'not entered'."""

    steroids: str = NOT_ENTERED
    clinical_status: str = NOT_ENTERED
    weeks_since_radiotherapy: float | None = None
    confirmation: str = NOT_ENTERED

    def problems(self) -> list[str]:
        """Each wrong value as one sentence (empty when all are valid)."""
        found = []
        for name, value, allowed in (("corticosteroids", self.steroids, STEROIDS),
                                     ("clinical status", self.clinical_status, CLINICAL_STATUS),
                                     ("confirmation", self.confirmation, CONFIRMATION)):
            if value not in allowed:
                found.append(f"{name} must be one of {', '.join(allowed)} (got {value!r}).")
        if self.weeks_since_radiotherapy is not None and not 0 <= self.weeks_since_radiotherapy < 1000:
            found.append(f"weeks since radiotherapy must be 0 or more (got {self.weeks_since_radiotherapy:g}).")
        return found


@dataclass
class Response:
    """The response the criteria give from the imaging category and the reader's findings."""

    category: str
    provisional: bool
    reasons: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # what the reader still has to enter or confirm

    def summary(self) -> str:
        text = f"{'Provisional ' if self.provisional else ''}{self.category}"
        text = text[0].upper() + text[1:]
        details = "; ".join(self.reasons + [f"to do: {m}" for m in self.missing])
        return f"{text}{f' ({details})' if details else ''}."


def overall_response(imaging: str, findings: ClinicalFindings) -> Response:
    """Combine one imaging category (of the bidimensional or the volumetric rule) with the reader's findings."""
    reasons, missing = [], []
    if findings.clinical_status == "worse":
        return Response(PROGRESSION, False, ["clinical deterioration not attributable to other causes"])
    if findings.clinical_status == NOT_ENTERED:
        missing.append("enter the clinical status")
    if imaging == NOT_EVALUABLE:
        return Response(NOT_EVALUABLE, False, ["the imaging category could not be evaluated"])
    if imaging == PROGRESSION:
        weeks = findings.weeks_since_radiotherapy
        if weeks is None:
            missing.append("enter the weeks since radiotherapy (within 12 weeks, progression needs confirming)")
        elif weeks < PSEUDOPROGRESSION_WEEKS and findings.confirmation != "confirmed":
            reasons.append(f"{weeks:g} weeks after radiotherapy: pseudoprogression is possible")
            missing.append("confirm on a repeat scan about 4 weeks later")
        return Response(PROGRESSION, bool(missing), reasons, missing)
    category = imaging
    if imaging in (COMPLETE, PARTIAL):
        if findings.steroids == "increased":
            category = STABLE
            reasons.append("corticosteroids increased: not a response")
        elif imaging == COMPLETE and findings.steroids == "stable or decreased":
            category = PARTIAL
            reasons.append("still on corticosteroids: a complete response needs none beyond physiological doses")
        elif findings.steroids == NOT_ENTERED:
            missing.append("enter the corticosteroid dose")
        if category != STABLE and findings.confirmation != "confirmed":
            missing.append("confirm the response on a scan at least 4 weeks later")
    elif findings.steroids == "increased":
        reasons.append("an increase of corticosteroids alone is not progression")
    elif findings.steroids == NOT_ENTERED:
        missing.append("enter the corticosteroid dose")
    return Response(category, bool(missing), reasons, missing)
