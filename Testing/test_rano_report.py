"""The one-page HTML reports: an exam's (measure --html) and a comparison's (compare --html), parsed back: the
key slices are PNG images, the tables hold the measurements and the categories, the note is there."""

from __future__ import annotations

import base64
import io
import json
from html.parser import HTMLParser

import matplotlib.image
import numpy as np
import SimpleITK as sitk

from braintumorseg.cli import main
from braintumorseg.compare import PARTIAL, exam_from_report, load_exam
from braintumorseg.labels import from_internal
from braintumorseg.rano_results import RanoMeasurement
from test_compare import scaled


class Page(HTMLParser):
    """What a report page holds: its images (decoded PNG bytes), table cells and text."""

    def __init__(self, text: str):
        super().__init__()
        self.images: list[bytes] = []
        self.cells: list[str] = []
        self.text: list[str] = []
        self._in_cell = False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "img":
            self.images.append(base64.b64decode(attributes["src"].split("base64,", 1)[1]))
        self._in_cell = tag in ("td", "th")

    def handle_endtag(self, tag):
        self._in_cell = False if tag in ("td", "th") else self._in_cell

    def handle_data(self, data):
        self.text.append(data)
        if self._in_cell:
            self.cells.append(data.strip())


def test_measure_command_writes_json_and_a_one_page_html_report(sample, tmp_path, capsys):
    out, html = tmp_path / "exam.json", tmp_path / "exam.html"
    assert main(["measure", str(sample["label"]), "--image", str(sample["t1c"]), "-o", str(out),
                 "--html", str(html)]) == 0
    result = RanoMeasurement.from_dict(json.loads(out.read_text()))
    page = Page(html.read_text())
    assert len(page.images) == len(result.targets) == 1
    assert page.images[0][:8] == b"\x89PNG\r\n\x1a\n"
    pixels = matplotlib.image.imread(io.BytesIO(page.images[0]))[..., :3]
    outline = np.abs(pixels - np.array([1.0, 0.231, 0.188])).max(axis=-1) < 0.08  # the enhancing tumour, outlined
    line = np.abs(pixels - np.array([1.0, 0.843, 0.0])).max(axis=-1) < 0.08  # lesion 1's lines (gold)
    assert outline.sum() > 50 and line.sum() > 50
    lesion = result.lesions[0]
    assert f"{lesion.longest.length_mm:.1f}" in page.cells and f"{lesion.product_mm2:.0f}" in page.cells
    assert "target" in page.cells and any("Imaging measurements only" in t for t in page.text)
    assert "lesion 1 (target)" in capsys.readouterr().out
    assert main(["measure", str(sample["label"])]) == 2  # a label map without its image
    assert "--image" in capsys.readouterr().err


def test_compare_command_with_reports_and_label_maps(sample, tmp_path, capsys):
    """Reports as `segment --report` writes them (paths relative to the report), or label maps with their images."""
    baseline = load_exam(sample["label"], sample["t1c"], "brats2021", "baseline")
    follow = scaled(baseline, 0.6)
    labels = tmp_path / "follow_labels.nii.gz"
    image = tmp_path / "follow_t1c.nii.gz"
    written = sitk.GetImageFromArray(from_internal(follow.classes))
    written.CopyInformation(follow.labels)
    sitk.WriteImage(written, str(labels))
    sitk.WriteImage(follow.image, str(image))
    report = tmp_path / "follow.json"
    report.write_text(json.dumps({"inputs": {"t1c": image.name}, "output": labels.name, "reference": "t1c",
                                  "label_convention": "brats2021"}))
    assert exam_from_report(report).classes.sum() == follow.classes.sum()
    out, html = tmp_path / "comparison.json", tmp_path / "comparison.html"
    code = main(["compare", "--baseline", str(sample["label"]), "--baseline-image", str(sample["t1c"]),
                 "--follow-up", str(report), "--no-register", "-o", str(out), "--html", str(html)])
    assert code == 0
    page = Page(html.read_text())
    assert len(page.images) == 2 and all(png[:4] == b"\x89PNG" for png in page.images)  # baseline, follow-up
    assert "partial response" in page.cells and "stable disease" in page.cells and "-64.0 %" in page.cells
    printed = capsys.readouterr().out
    assert "bidimensional partial response, volumetric stable disease" in printed
    document = json.loads(out.read_text())
    assert document["bidimensional"]["category"] == PARTIAL and document["agree"] is False
    assert "Imaging measurements only" in document["note"]

