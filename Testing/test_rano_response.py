"""The reader's findings combined with an imaging category (rano_response.py), on the command line and in the
report of the sample case compared with itself."""

from __future__ import annotations

import json

import pytest

from braintumorseg.cli import main
from braintumorseg.rano_response import NONE_OR_PHYSIOLOGICAL, NOT_ENTERED, ClinicalFindings, overall_response
from braintumorseg.rano_results import COMPLETE, NOT_EVALUABLE, PARTIAL, PROGRESSION, STABLE

NONE = NONE_OR_PHYSIOLOGICAL
ALL_ENTERED = ClinicalFindings(NONE, "stable", 30.0, "confirmed")


@pytest.mark.parametrize("imaging, findings, category, provisional, says", [
    (COMPLETE, ALL_ENTERED, COMPLETE, False, ""),
    (COMPLETE, ClinicalFindings("stable or decreased", "stable", 30.0, "confirmed"), PARTIAL, False,
     "still on corticosteroids"),
    (COMPLETE, ClinicalFindings("increased", "stable", 30.0, "confirmed"), STABLE, False, "not a response"),
    (PARTIAL, ClinicalFindings(NONE, "improved", 30.0), PARTIAL, True,
     "confirm the response on a scan at least 4 weeks later"),
    (PARTIAL, ClinicalFindings(NONE, "improved", 30.0, "not confirmed"), STABLE, False,
     "the repeat scan did not confirm the response"),
    (COMPLETE, ClinicalFindings(NONE, "stable", None, "not confirmed"), STABLE, False, "did not confirm"),
    (PARTIAL, ClinicalFindings("stable or decreased", "stable", None, "confirmed"), PARTIAL, False, ""),
    (STABLE, ClinicalFindings("increased", "stable"), STABLE, True, "alone is not progression"),
    (STABLE, ALL_ENTERED, STABLE, False, ""),
    (STABLE, ClinicalFindings(NONE, "worse"), PROGRESSION, False, "clinical deterioration"),
    (PROGRESSION, ClinicalFindings(NONE, "stable", 8.0), PROGRESSION, True, "pseudoprogression is possible"),
    (PROGRESSION, ClinicalFindings(NONE, "stable", 8.0, "confirmed"), PROGRESSION, False, "confirmed"),
    (PROGRESSION, ClinicalFindings(NONE, "stable", 8.0, "not confirmed"), STABLE, False, "(pseudoprogression)"),
    (PROGRESSION, ClinicalFindings(NONE, "stable", 12.0), PROGRESSION, False, ""),
    (PROGRESSION, ClinicalFindings(), PROGRESSION, True, "enter the weeks since radiotherapy"),
    (PROGRESSION, ClinicalFindings(confirmation="confirmed"), PROGRESSION, False, ""),
    (NOT_EVALUABLE, ALL_ENTERED, NOT_EVALUABLE, False, "could not be evaluated"),
])
def test_overall_response(imaging, findings, category, provisional, says):
    response = overall_response(imaging, findings)
    assert (response.category, response.provisional) == (category, provisional)
    assert says in response.summary()
    assert response.summary().startswith("Provisional" if provisional else category[0].upper())


def test_nothing_entered_leaves_the_response_provisional_and_says_what_is_missing():
    response = overall_response(STABLE, ClinicalFindings())
    assert response.provisional and response.category == STABLE
    assert response.missing == ["enter the clinical status", "enter the corticosteroid dose"]


def test_wrong_values_are_named():
    assert ClinicalFindings().problems() == []
    problems = ClinicalFindings("lots", NOT_ENTERED, -2.0, NOT_ENTERED).problems()
    assert len(problems) == 2 and "corticosteroids must be one of" in problems[0]
    assert problems[1] == "weeks since radiotherapy must be between 0 and 999 (got -2)."
    assert ClinicalFindings(weeks_since_radiotherapy=999.0).problems() == []


def test_the_command_line_takes_the_readers_findings(sample, tmp_path, capsys):
    report = tmp_path / "comparison.html"
    arguments = ["compare", "--baseline", str(sample["label"]), "--baseline-image", str(sample["t1c"]),
                 "--follow-up", str(sample["label"]), "--follow-up-image", str(sample["t1c"]), "--no-register",
                 "--steroids", NONE, "--clinical-status", "stable", "--weeks-since-radiotherapy", "20"]
    assert main(arguments + ["--json", "--html", str(report)]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["findings"] == {"steroids": NONE, "clinical_status": "stable", "weeks_since_radiotherapy": 20.0,
                                    "confirmation": NOT_ENTERED}
    assert document["responses"]["bidimensional"]["category"] == STABLE
    assert not document["responses"]["bidimensional"]["provisional"]
    assert "weeks since radiotherapy 20.0" in report.read_text() and "Stable disease." in report.read_text()
    assert main(arguments) == 0
    assert "Response with the reader's findings (both rules): Stable disease." in capsys.readouterr().out
    assert main(arguments + ["--weeks-since-radiotherapy", "-1"]) == 2
    assert capsys.readouterr().err.strip().endswith(
        "--weeks-since-radiotherapy: weeks since radiotherapy must be between 0 and 999 (got -1).")
