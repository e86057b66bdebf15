"""A one-page HTML report of an exam's RANO measurements, or of a comparison: key slices with the line pairs
(matplotlib PNG, embedded), the lesion table, the volumes and the imaging category (jinja2 template)."""

from __future__ import annotations

import base64
import datetime
import io

import numpy as np
import SimpleITK as sitk

from . import __version__
from .compare import Comparison, Exam
from .errors import InputError
from .labels import ET
from .rano import measurement_grid
from .rano_results import Lesion, RanoMeasurement, lesion_colour
from .resources import RESOURCES

TEMPLATE = RESOURCES / "Reports" / "rano_report.html.j2"
SHOWN_LESIONS = 3  # key slices per exam: the targets, else the largest lesions
VIEW_MM = 50.0  # half-width of the view around a lesion
def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise InputError("the HTML report needs matplotlib, which is not installed: "
                         "pip install 'braintumorseg[report]'.") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def key_slice_png(exam: Exam, lesion: Lesion, caption: str) -> str:
    """The lesion's measured slice (T1Gd, enhancing tumour outlined, both diameters drawn) as base64 PNG."""
    plt = _pyplot()
    grid, _ = measurement_grid(exam.image)
    classes = sitk.GetImageFromArray(exam.classes)
    classes.CopyInformation(exam.labels)
    label_grid, _ = measurement_grid(classes)
    picture = sitk.GetArrayViewFromImage(grid)[lesion.slice]
    enhancing = sitk.GetArrayViewFromImage(label_grid)[lesion.slice] == ET
    spacing = grid.GetSpacing()
    ends = [[grid.TransformPhysicalPointToContinuousIndex(point)[:2] for point in (line.start, line.end)]
            for line in (lesion.longest, lesion.perpendicular)]
    centre = np.mean([point for line in ends for point in line], axis=0)
    half = np.array([VIEW_MM / spacing[0], VIEW_MM / spacing[1]])
    inside = picture[picture != 0]
    low, high = np.percentile(inside, (1, 99.5)) if inside.size else (0.0, 1.0)
    figure, axis = plt.subplots(figsize=(3.2, 3.2), facecolor="black")
    axis.imshow(picture, cmap="gray", vmin=low, vmax=high, aspect=spacing[1] / spacing[0], interpolation="nearest")
    if enhancing.any():
        axis.contour(enhancing.astype(float), levels=[0.5], colors=["#ff3b30"], linewidths=0.7)
    colour = lesion_colour(lesion.id)
    for (start, end), style in zip(ends, ("-", "--")):
        axis.plot([start[0], end[0]], [start[1], end[1]], style, color=colour, linewidth=1.6)
    axis.set_xlim(centre[0] - half[0], centre[0] + half[0])
    axis.set_ylim(centre[1] + half[1], centre[1] - half[1])
    axis.set_title(caption, color="white", fontsize=8)
    axis.axis("off")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, facecolor="black", bbox_inches="tight")
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _exam_section(heading: str, exam: Exam, measurement: RanoMeasurement) -> dict:
    shown = [l for l in measurement.lesions if l.target] or measurement.lesions
    figures = [{"png": key_slice_png(exam, lesion,
                                     f"{heading}: lesion {lesion.id}, {lesion.longest.length_mm:.1f} × "
                                     f"{lesion.perpendicular.length_mm:.1f} mm, slice {lesion.slice}"),
                "caption": f"lesion {lesion.id}"} for lesion in shown[:SHOWN_LESIONS]]
    return {"heading": heading, "measurement": measurement, "figures": figures}


def _render(**values) -> str:
    try:
        import jinja2
    except ImportError:
        raise InputError("the HTML report needs jinja2, which is not installed: "
                         "pip install 'braintumorseg[report]'.") from None
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATE.parent)), autoescape=True,
                                     undefined=jinja2.StrictUndefined)
    made = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return environment.get_template(TEMPLATE.name).render(version=__version__, made=made, **values)


def exam_report_html(exam: Exam, measurement: RanoMeasurement) -> str:
    """The one-page report of one exam."""
    return _render(title=f"RANO measurements: {exam.name}", subtitle=f"{measurement.criteria}, enhancing lesions "
                   f"as {measurement.connectivity}-connected components of tumour core.", note=measurement.note,
                   comparison=None, changes=[], registration="",
                   exams=[_exam_section("Exam", exam, measurement)])


def comparison_report_html(baseline: Exam, follow_up: Exam, comparison: Comparison) -> str:
    """The one-page report of a baseline and follow-up comparison."""
    def percent(value: float | None) -> str:
        return "n/a" if value is None else f"{value:+.1f} %"
    before, after = comparison.baseline, comparison.follow_up
    changes = [
        {"name": "sum of products of the targets (mm²)", "before": f"{comparison.baseline_sum_mm2:.0f}",
         "after": f"{comparison.follow_up_sum_mm2:.0f}", "change": percent(comparison.sum_change_percent)},
        {"name": "enhancing volume (mL)", "before": f"{before.enhancing_ml:.2f}", "after": f"{after.enhancing_ml:.2f}",
         "change": percent(comparison.enhancing_change_percent)},
        {"name": "non-enhancing (T2/FLAIR) volume (mL)", "before": f"{before.non_enhancing_ml:.2f}",
         "after": f"{after.non_enhancing_ml:.2f}", "change": percent(comparison.non_enhancing_change_percent)},
    ]
    registration = comparison.registration
    text = (f"Follow-up registered rigidly onto the baseline (Mattes mutual information): rotation "
            f"{registration['rotation_degrees']}°, translation {registration['translation_mm']} mm."
            if registration.get("registered") else "Exams compared without registration (given as aligned).")
    return _render(title=f"RANO comparison: {comparison.baseline_name} → {comparison.follow_up_name}",
                   subtitle=f"{before.criteria}: bidimensional rule (−50 % / +25 % of the sum of products) and "
                            "volumetric rule (−65 % / +40 % of the enhancing volume); new measurable lesions are "
                            "progression by both.", note=comparison.note,
                   comparison={"summary": comparison.summary(), "bidimensional": comparison.bidimensional,
                               "volumetric": comparison.volumetric, "matches": comparison.matches,
                               "responses": {rule: response.summary()
                                             for rule, response in comparison.responses.items()},
                               "findings": comparison.findings},
                   changes=changes, registration=text,
                   exams=[_exam_section("Baseline", baseline, before), _exam_section("Follow-up", follow_up, after)])
