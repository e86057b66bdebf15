"""The `braintumorseg` command line: segment, batch, evaluate, demo, measure and compare.

Exit status (`protocol`): 0 success; 2 bad input or usage (one sentence on stderr says what is wrong and what to
do; no output file is left behind); 1 internal error (a bug; `--debug` shows the traceback); 130 cancelled with
Ctrl-C or SIGTERM (nothing half-written is left; `batch` keeps finished cases). `batch` exits 1 when any case hit
an internal error, else 2 when any case had bad input. `segment --json-progress` prints the progress lines that
`protocol` specifies (the Slicer module runs this command in a separate process and reads them).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

from . import __version__
from .errors import Cancelled, InputError
from .images import check_file
from .labels import CONVENTIONS, REGION_NAMES, REGIONS, VOLUMES
from .modalities import DISPLAY_NAMES, MODALITIES
from .output_paths import check_output_folder, check_output_path, check_outputs_distinct
from .pipeline import CancelToken, Pipeline, SegmentationReport
from .progress import JsonProgress, ProgressBar
from .protocol import EXIT_CANCELLED, EXIT_INPUT, EXIT_INTERNAL, EXIT_OK, PROG, error_line
from .rano_response import (CLINICAL_STATUS, CONFIRMATION, CONFIRMATION_WEEKS, NOT_ENTERED, PSEUDOPROGRESSION_WEEKS,
                            STEROIDS, ClinicalFindings)
from .run_summary import processing_summary
from .settings import CohortSettings, RunSettings, add_arguments

OUTPUT_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha")


def build_parser() -> argparse.ArgumentParser:
    """The parser with its four sub-commands."""
    parser = argparse.ArgumentParser(prog=PROG, description="Brain tumour segmentation from multimodal MRI "
                                     "(T1, T1Gd, T2, FLAIR, any subset): necrotic core, edema, enhancing tumour.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show the traceback of internal errors")

    run = argparse.ArgumentParser(add_help=False)
    add_arguments(run)

    segment = commands.add_parser("segment", parents=[run, common], help="segment one case",
                                  description="Segment one case; inputs are resampled onto the T1Gd grid "
                                  "(else FLAIR, else the first given) and the labels are written on it.")
    for modality in MODALITIES:
        segment.add_argument(f"--{modality}", metavar="FILE", help=f"{DISPLAY_NAMES[modality]} image (NIfTI, NRRD, "
                             "MHA); with --dicom, the series to take for it (number or UID)")
    segment.add_argument("--dicom", metavar="FOLDER",
                         help="a DICOM study: its T1, T1Gd, T2 and FLAIR series are chosen from their metadata "
                              "(override with --t1c SERIES etc.); needs the 'dicom' extra (pydicom, highdicom)")
    segment.add_argument("--dicom-seg", metavar="OUT.dcm",
                         help="with --dicom, also write a DICOM SEG referencing the reference series (T1Gd, else "
                              "FLAIR, else the first given)")
    segment.add_argument("--dicom-sr", metavar="SR.dcm",
                         help="with --dicom-seg, also write a DICOM structured report (TID 1500) with the volume of "
                              "each segment")
    segment.add_argument("-o", "--output", required=True, metavar="OUT.nii.gz", help="label map to write")
    segment.add_argument("--report", metavar="R.json", help="also write the run report as JSON")
    segment.add_argument("--probability-map", metavar="P.nii.gz",
                         help="also write the whole-tumour probability in percent (0-100, before post-processing) "
                              "on the output's grid; below the card's threshold (50 %% for the shipped model), "
                              "20 %% and up is where the model hesitated: check there first")
    segment.add_argument("--json-progress", action="store_true",
                         help="print progress as JSON lines on stdout (for other programs)")
    segment.set_defaults(handler=command_segment)

    batch = commands.add_parser("batch", parents=[run, common], help="segment every case below a folder",
                                description="Segment every case found below DIR (BraTS 2013-2023 file names "
                                "or an nnU-Net dataset); writes OUTDIR/<case>.nii.gz, <case>.json and "
                                "summary.json/summary.csv; broken cases are reported and skipped.")
    batch.add_argument("folder", metavar="DIR", help="folder with the cases")
    batch.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="folder for the results")
    cohort = batch.add_argument_group("cohorts (docs/cohorts.md)")
    add_arguments(cohort, CohortSettings)
    cohort.add_argument("--merge-summaries", action="store_true",
                        help="write summary.json/.csv of OUTDIR from its shard summaries, and segment nothing")
    batch.set_defaults(handler=command_batch)

    evaluate = commands.add_parser("evaluate", parents=[common], help="Dice and HD95 of a label map",
                                   description="Dice and 95% Hausdorff distance (mm) of whole tumour, tumour "
                                   "core and enhancing tumour, with the BraTS rules for empty regions.")
    evaluate.add_argument("--prediction", required=True, metavar="P", help="predicted label map")
    evaluate.add_argument("--reference", required=True, metavar="R", help="reference label map")
    evaluate.add_argument("--prediction-convention", choices=list(CONVENTIONS), default="brats2021",
                          help="labels of the prediction (default %(default)s)")
    evaluate.add_argument("--reference-convention", choices=list(CONVENTIONS), default="brats2021",
                          help="labels of the reference: brats2015 (1,3 core, 2 edema, 4 enhancing), "
                               "brats2021 (1/2/4), brats2023 (1/2/3), nnunet (1 edema, 2 core, 3 enhancing)")
    evaluate.add_argument("-o", "--output", metavar="SCORES.json", help="also write the scores as JSON")
    evaluate.add_argument("--json", action="store_true", help="print JSON instead of the table")
    evaluate.set_defaults(handler=command_evaluate)

    demo = commands.add_parser("demo", parents=[run, common], help="segment the bundled sample case",
                               description="Segment the bundled sample case (TCGA-FG-6692) and write the "
                               "label map, the report, the scores against its consensus label and a PNG.")
    demo.add_argument("-o", "--output", default="braintumorseg-demo", metavar="DIR",
                      help="folder for the results (default: %(default)s)")
    demo.set_defaults(handler=command_demo)
    add_response_commands(commands, common)
    return parser


def add_response_commands(commands, common: argparse.ArgumentParser) -> None:
    """`measure` (RANO measurements of one exam) and `compare` (baseline and follow-up)."""
    exam = argparse.ArgumentParser(add_help=False)
    exam.add_argument("--convention", choices=list(CONVENTIONS), default="brats2021",
                      help="labels of label maps given directly (a report names its own; default %(default)s)")
    exam.add_argument("--criteria", choices=("2.0", "2010"), default="2.0",
                      help="RANO version: 2.0 (Wen et al. 2023, up to 3 targets) or 2010 (up to 5); default 2.0")
    exam.add_argument("--html", metavar="R.html", help="also write a one-page HTML report with the key slices")
    exam.add_argument("-o", "--output", metavar="OUT.json", help="also write the measurements as JSON")
    exam.add_argument("--json", action="store_true", help="print JSON instead of the text")
    measure = commands.add_parser("measure", parents=[exam, common], help="RANO measurements of one exam",
                                  description="Bidimensional RANO measurements of the enhancing lesions of a "
                                  "segmented exam: its report (segment --report) or a label map with its T1Gd.")
    measure.add_argument("exam", metavar="EXAM", help="report JSON, or label map (then give --image)")
    measure.add_argument("--image", metavar="T1GD", help="the T1Gd the label map is on")
    measure.set_defaults(handler=command_measure)
    compare = commands.add_parser("compare", parents=[exam, common], help="baseline and follow-up exams",
                                  description="Register the follow-up's T1Gd rigidly onto the baseline's, match "
                                  "lesions by place, give the change of the sum of products and volumes and the "
                                  "imaging category by the bidimensional and the volumetric rule. Imaging "
                                  "measurements only: the clinical criteria are the reader's.")
    for name in ("baseline", "follow-up"):
        compare.add_argument(f"--{name}", required=True, metavar="EXAM",
                             help=f"{name} exam: report JSON, or label map (then give --{name}-image)")
        compare.add_argument(f"--{name}-image", metavar="T1GD", help=f"the T1Gd the {name} label map is on")
    compare.add_argument("--no-register", action="store_true",
                         help="the exams are already aligned: match lesions without registration")
    compare.add_argument("--match-margin-mm", type=float, default=5.0, metavar="MM",
                         help="a follow-up lesion this close to a baseline lesion matches it (default %(default)s)")
    reader = compare.add_argument_group("the reader's findings (the clinical parts of the criteria; docs/rano.md)")
    reader.add_argument("--steroids", choices=STEROIDS, default=NOT_ENTERED,
                        help="corticosteroid dose at the follow-up against the baseline")
    reader.add_argument("--clinical-status", choices=CLINICAL_STATUS, default=NOT_ENTERED,
                        help="worse: clinical deterioration not attributable to other causes")
    reader.add_argument("--weeks-since-radiotherapy", type=float, metavar="W",
                        help=f"weeks from the end of radiotherapy to the follow-up: within {PSEUDOPROGRESSION_WEEKS}, "
                             "progression needs a confirmation scan (pseudoprogression)")
    reader.add_argument("--confirmation", choices=CONFIRMATION, default=NOT_ENTERED,
                        help=f"whether a repeat scan at least {CONFIRMATION_WEEKS} weeks later confirmed the category "
                             "('not confirmed': it did not)")
    compare.set_defaults(handler=command_compare)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    previous = signal.signal(signal.SIGTERM, _interrupt) if _main_thread() else None
    try:
        return args.handler(args)
    except InputError as error:
        print(error_line(str(error)), file=sys.stderr)
        return EXIT_INPUT
    except (KeyboardInterrupt, Cancelled):
        print(f"{PROG}: cancelled; nothing half-written was left behind.", file=sys.stderr)
        return EXIT_CANCELLED
    except Exception as error:  # noqa: BLE001 - the last resort: one line, not a traceback
        if args.debug:
            traceback.print_exc()
        print(f"{PROG}: internal error ({type(error).__name__}: {error}). This is a bug: please report it "
              "with the command you ran" + ("." if args.debug else "; add --debug to see the traceback."),
              file=sys.stderr)
        return EXIT_INTERNAL
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _interrupt(_signum, _frame) -> None:
    raise KeyboardInterrupt


# ---- shared helpers ----------------------------------------------------------------------------

def pipeline_from_args(args: argparse.Namespace, progress=None, cancel: CancelToken | None = None) -> Pipeline:
    return Pipeline.from_settings(RunSettings.from_namespace(args), progress, cancel)


def print_warnings(report: SegmentationReport) -> None:
    summary = processing_summary(asdict(report))
    if summary:
        print(f"{PROG}: {summary}", file=sys.stderr)
    for warning in report.warnings:
        print(f"{PROG}: warning: {warning}", file=sys.stderr)


def volumes_table(report: SegmentationReport) -> str:
    return "\n".join(f"  {volume.name:<17} {report.volumes_ml[volume.key]:9.2f} mL" for volume in VOLUMES)


def rano_lines(report: SegmentationReport) -> str:
    from .rano_results import RanoMeasurement, measurement_lines
    return measurement_lines(RanoMeasurement.from_dict(report.rano)) if report.rano else ""


def scores_table(scores: dict[str, dict[str, float]]) -> str:
    lines = [f"  {'region':<22} {'Dice':>7} {'HD95 (mm)':>10}"]
    for region in REGIONS:
        lines.append(f"  {region + ' ' + REGION_NAMES[region]:<22} {scores[region]['dice']:7.4f} "
                     f"{scores[region]['hd95']:10.2f}")
    return "\n".join(lines)


def _progress(json_lines: bool = False, label: str = ""):
    if json_lines:
        return JsonProgress(sys.stdout)
    return ProgressBar(sys.stderr, label) if sys.stderr.isatty() else None


# ---- commands ----------------------------------------------------------------------------------

def _input_files(args: argparse.Namespace) -> dict[str, str]:
    inputs = {m: getattr(args, m) for m in MODALITIES if getattr(args, m)}
    if not inputs:
        raise InputError("no input volume given: give at least one of --t1, --t1c, --t2, --flair (or --dicom).")
    for modality, path in inputs.items():
        check_file(path, DISPLAY_NAMES[modality])
    by_file: dict[Path, list[str]] = {}
    for modality, path in inputs.items():
        by_file.setdefault(Path(path).resolve(), []).append(f"--{modality}")
    for path, flags in by_file.items():
        if len(flags) > 1:
            raise InputError(f"the same file {path} is given for {' and '.join(flags)}; give each sequence its own "
                             "image.")
    return inputs


def command_segment(args: argparse.Namespace) -> int:
    study = None
    if args.dicom_sr and not args.dicom_seg:
        raise InputError("--dicom-sr needs --dicom-seg OUT.dcm: the report measures the segments of that SEG.")
    if args.dicom:
        from .dicom_series import dicom_study
        study = dicom_study(args.dicom, {m: getattr(args, m) for m in MODALITIES})
        inputs = {"--dicom": args.dicom}
    elif args.dicom_seg:
        raise InputError("--dicom-seg needs a DICOM study (--dicom FOLDER): the SEG references its source series.")
    else:
        inputs = _input_files(args)
    output = check_output_path(args.output, "output", OUTPUT_SUFFIXES)
    report_path = check_output_path(args.report, "report") if args.report else None
    probability_path = (check_output_path(args.probability_map, "probability map", OUTPUT_SUFFIXES)
                        if args.probability_map else None)
    seg_path = check_output_path(args.dicom_seg, "DICOM SEG", (".dcm",)) if args.dicom_seg else None
    sr_path = check_output_path(args.dicom_sr, "DICOM SR", (".dcm",)) if args.dicom_sr else None
    check_outputs_distinct({"output": output, "--report": report_path, "--probability-map": probability_path,
                            "--dicom-seg": seg_path, "--dicom-sr": sr_path},
                           {f"--{modality} input": path for modality, path in inputs.items() if not study})
    progress = _progress(args.json_progress)
    try:
        pipeline = pipeline_from_args(args, progress)
        report = pipeline.segment_files(study or inputs, output, report_path, probability_path)
        if seg_path:
            _write_dicom_outputs(study, report, output, seg_path, sr_path, report_path, probability_path)
    finally:
        if progress:
            progress.close()
    print_warnings(report)
    if not args.json_progress:
        print(f"wrote {output} ({report.label_convention} labels, {report.total_seconds:.1f} s on {report.device}, "
              f"{report.precision})" + (f" and {probability_path}" if probability_path else ""))
        print(volumes_table(report))
        print(rano_lines(report))
    return EXIT_OK


def _write_dicom_outputs(study, report: SegmentationReport, output: Path, seg_path: Path, sr_path: Path | None,
                         *others: Path | None) -> None:
    """The DICOM SEG of the label map just written (and its volume report); on failure no output is left."""
    import SimpleITK as sitk
    from .dicom_seg import write_dicom_seg, write_volume_report
    name, _, version = report.model.rpartition(" ")
    source = study.chosen[report.reference]
    try:
        write_dicom_seg(sitk.ReadImage(str(output)), source, seg_path, report.label_convention,
                        (name or version, version))
        if sr_path:
            write_volume_report(seg_path, source, sr_path, (name or version, version))
    except BaseException:
        for path in (output, seg_path, sr_path, *others):
            if path:
                Path(path).unlink(missing_ok=True)
        raise


def command_batch(args: argparse.Namespace) -> int:
    from .batch import find_batch_cases
    from .cohort import merge_summaries, parse_shard, run_cohort, summary_stem
    from .progress import CohortProgress
    cases = find_batch_cases(args.folder)
    output = check_output_folder(args.output, "output folder")
    if args.merge_summaries:
        summary = merge_summaries(cases, output, str(args.folder))
        print(f"merged the shard summaries of {len(summary.results)} cases ({len(summary.failed)} failed) into "
              f"{output / 'summary.json'} and {output / 'summary.csv'}")
        return summary.exit_code()
    cohort = CohortSettings.from_namespace(args)
    if cohort.scheduler != "local" and cohort.backend != "dask":
        raise InputError("--scheduler is for --backend dask; add --backend dask or leave --scheduler out.")
    shard = parse_shard(cohort.shard)
    pipeline = pipeline_from_args(args)
    progress = CohortProgress(sys.stderr)

    def on_case(job) -> None:
        if progress.tty:
            pipeline.progress = lambda stage, fraction: progress.stage(job.name, stage, fraction)

    def on_result(result) -> None:
        progress.clear()
        kept = result.action.startswith("skipped")
        how = {"retried": ", retried", "skipped-done": ", skipped: done in an earlier run"}.get(result.action, "")
        if result.status == "ok":
            notes = f"; {len(result.warnings)} warning(s) in {result.report}" if result.warnings else ""
            print(f"{result.case}: ok{how} ({result.seconds:.1f} s, whole tumour "
                  f"{result.volumes_ml.get('whole_tumour', 0):.1f} mL{notes})")
        else:
            how = how or (", in an earlier run (--retry-failed retries it)" if kept else "")
            print(f"{result.case}: {result.status}{how}: {result.message.split(' | ')[0]}", file=sys.stderr)
        progress.case_finished(result.status != "ok", kept)

    try:
        summary = run_cohort(cases, output, pipeline, cohort, on_case=on_case, on_result=on_result,
                             on_plan=lambda jobs, kept: progress.plan(len(jobs) + len(kept)),
                             input_folder=str(args.folder))
    finally:
        progress.close()
    actions = {a: sum(r.action == a for r in summary.results) for a in ("segmented", "retried", "skipped-done")}
    ok = len(summary.results) - len(summary.failed)
    stem = summary_stem(shard)
    print(f"{ok} of {progress.total} cases ok ({actions['segmented']} segmented, {actions['retried']} retried, "
          f"{actions['skipped-done']} done before), {len(summary.failed)} failed"
          f"{', cancelled' if summary.cancelled else ''}; summary in {output / (stem + '.json')} and "
          f"{output / (stem + '.csv')}")
    if summary.cancelled:
        return EXIT_CANCELLED
    return summary.exit_code()


def command_evaluate(args: argparse.Namespace) -> int:
    from .metrics import evaluate_files
    from .output_paths import write_text_atomic
    output = check_output_path(args.output, "scores file") if args.output else None
    check_outputs_distinct({"scores file": output},
                           {"--prediction": args.prediction, "--reference": args.reference})
    scores = evaluate_files(args.prediction, args.reference, args.prediction_convention,
                            args.reference_convention)
    document = {"prediction": args.prediction, "reference": args.reference,
                "prediction_convention": args.prediction_convention,
                "reference_convention": args.reference_convention, "scores": scores}
    if output:
        write_text_atomic(json.dumps(document, indent=2) + "\n", output)
    print(json.dumps(document, indent=2) if args.json else scores_table(scores))
    return EXIT_OK


def command_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo
    folder = check_output_folder(args.output, "output folder")
    progress = _progress()
    try:
        result = run_demo(folder, pipeline_from_args(args, progress))
    finally:
        if progress:
            progress.close()
    print_warnings(result.report)
    print(f"segmented the bundled sample case with {result.report.model} in "
          f"{result.report.total_seconds:.1f} s on {result.report.device}, {result.report.precision}")
    print(volumes_table(result.report))
    print(rano_lines(result.report))
    print("agreement with the bundled consensus label (5 BraTS-2020 algorithms):")
    print(scores_table(result.scores))
    for path in (result.segmentation, result.report_path, result.evaluation, result.figure):
        print(f"wrote {path}")
    return EXIT_OK


def _exam(path: str, image: str | None, convention: str, what: str, flag: str):
    from .compare import exam_from_report, load_exam
    if path.lower().endswith(".json"):
        return exam_from_report(path, what)
    if not image:
        raise InputError(f"{what}: {path} is a label map; give the T1Gd it was segmented on with {flag}, or give "
                         "the report of the segment command instead.")
    return load_exam(path, image, convention, what)


def command_measure(args: argparse.Namespace) -> int:
    from .output_paths import write_text_atomic
    from .rano import measure_with_map
    from .rano_results import CRITERIA, measurement_lines
    output = check_output_path(args.output, "measurements file") if args.output else None
    html = check_output_path(args.html, "HTML report", (".html", ".htm")) if args.html else None
    check_outputs_distinct({"--output": output, "--html": html},
                           {k: v for k, v in {"EXAM": args.exam, "--image": args.image}.items() if v})
    exam = _exam(args.exam, args.image, args.convention, "exam", "--image")
    result, _ = measure_with_map(exam.classes, exam.labels, CRITERIA[args.criteria])
    if output:
        write_text_atomic(json.dumps(result.to_dict(), indent=2) + "\n", output)
    if html:
        from .rano_report import exam_report_html
        write_text_atomic(exam_report_html(exam, result), html)
    print(json.dumps(result.to_dict(), indent=2) if args.json else measurement_lines(result))
    return EXIT_OK


def command_compare(args: argparse.Namespace) -> int:
    from .compare import CompareSettings, compare_exams, comparison_lines
    from .output_paths import write_text_atomic
    from .rano_results import CRITERIA
    if not args.match_margin_mm >= 0:
        raise InputError(f"--match-margin-mm must be 0 or more (got {args.match_margin_mm:g}).")
    findings = ClinicalFindings(args.steroids, args.clinical_status, args.weeks_since_radiotherapy, args.confirmation)
    if findings.problems():  # the choices are checked by argparse: only the weeks can be wrong here
        raise InputError(f"--weeks-since-radiotherapy: {findings.problems()[0]}")
    output = check_output_path(args.output, "comparison file") if args.output else None
    html = check_output_path(args.html, "HTML report", (".html", ".htm")) if args.html else None
    inputs = {"--baseline": args.baseline, "--follow-up": args.follow_up, "--baseline-image": args.baseline_image,
              "--follow-up-image": args.follow_up_image}
    check_outputs_distinct({"--output": output, "--html": html}, {k: v for k, v in inputs.items() if v})
    baseline = _exam(args.baseline, args.baseline_image, args.convention, "baseline", "--baseline-image")
    follow_up = _exam(args.follow_up, args.follow_up_image, args.convention, "follow-up", "--follow-up-image")
    settings = CompareSettings(register=not args.no_register, match_margin_mm=args.match_margin_mm,
                               criteria=CRITERIA[args.criteria])
    comparison = compare_exams(baseline, follow_up, settings, findings)
    if output:
        write_text_atomic(json.dumps(comparison.to_dict(), indent=2) + "\n", output)
    if html:
        from .rano_report import comparison_report_html
        write_text_atomic(comparison_report_html(baseline, follow_up, comparison), html)
    print(json.dumps(comparison.to_dict(), indent=2) if args.json else comparison_lines(comparison))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
