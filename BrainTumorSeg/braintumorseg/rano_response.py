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
NONE_OR_PHYSIOLOGICAL = "none or physiological"
STEROIDS = (NOT_ENTERED, NONE_OR_PHYSIOLOGICAL, "stable or decreased", "increased")  # against the baseline exam
CLINICAL_STATUS = (NOT_ENTERED, "improved", "stable", "worse")  # "worse": deterioration not due to other causes
# Whether a repeat scan at least CONFIRMATION_WEEKS later confirmed the category ("not confirmed": it did not).
CONFIRMATION = (NOT_ENTERED, "confirmed", "not confirmed")
CONFIRMATION_WEEKS = 4
PSEUDOPROGRESSION_WEEKS = 12  # after the end of radiotherapy: imaging progression needs a confirmation scan
MAX_WEEKS = 999.0
NOT_ENTERED_WEEKS = -1.0  # how the panel's spin box says "not entered"


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
        if self.weeks_since_radiotherapy is not None and not 0 <= self.weeks_since_radiotherapy <= MAX_WEEKS:
            found.append(f"weeks since radiotherapy must be between 0 and {MAX_WEEKS:g} "
                         f"(got {self.weeks_since_radiotherapy:g}).")
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
    if findings.clinical_status == "worse":
        return Response(PROGRESSION, False, ["clinical deterioration not attributable to other causes"])
    if imaging == NOT_EVALUABLE:
        return Response(NOT_EVALUABLE, False, ["the imaging category could not be evaluated"])
    if imaging == PROGRESSION:
        return _progression(findings)
    reasons, missing = [], []
    if findings.clinical_status == NOT_ENTERED:
        missing.append("enter the clinical status")
    category = imaging
    if imaging in (COMPLETE, PARTIAL):
        if findings.steroids == "increased":
            category = STABLE
            reasons.append("corticosteroids increased: not a response")
        elif findings.confirmation == "not confirmed":
            category = STABLE
            reasons.append("the repeat scan did not confirm the response")
        elif imaging == COMPLETE and findings.steroids == "stable or decreased":
            category = PARTIAL
            reasons.append("still on corticosteroids: a complete response needs none beyond physiological doses")
        if findings.steroids == NOT_ENTERED:
            missing.append("enter the corticosteroid dose")
        if category != STABLE and findings.confirmation == NOT_ENTERED:
            missing.append(f"confirm the response on a scan at least {CONFIRMATION_WEEKS} weeks later")
    elif findings.steroids == "increased":
        reasons.append("an increase of corticosteroids alone is not progression")
        missing.append("assess again at the next scan (stable disease needs stable or decreased corticosteroids)")
    elif findings.steroids == NOT_ENTERED:
        missing.append("enter the corticosteroid dose")
    return Response(category, bool(missing), reasons, missing)


def _progression(findings: ClinicalFindings) -> Response:
    """Imaging progression: final once confirmed, or past the pseudoprogression window; a repeat scan that did not
    confirm it makes it stable disease (pseudoprogression)."""
    if findings.confirmation == "confirmed":
        return Response(PROGRESSION, False, ["confirmed on a repeat scan"])
    if findings.confirmation == "not confirmed":
        return Response(STABLE, False, ["the repeat scan did not confirm the progression (pseudoprogression)"])
    weeks = findings.weeks_since_radiotherapy
    if weeks is None:
        return Response(PROGRESSION, True, [], [f"enter the weeks since radiotherapy (within "
                                                f"{PSEUDOPROGRESSION_WEEKS} weeks, progression needs confirming)"])
    if weeks < PSEUDOPROGRESSION_WEEKS:
        return Response(PROGRESSION, True, [f"{weeks:g} weeks after radiotherapy: pseudoprogression is possible"],
                        [f"confirm on a repeat scan about {CONFIRMATION_WEEKS} weeks later"])
    return Response(PROGRESSION, False)
