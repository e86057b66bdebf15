"""One case from input files to a label map: named stages with progress, timings and cancel."""

from __future__ import annotations

import json
import os
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Mapping

import numpy as np
import SimpleITK as sitk
import torch

from .brain_extraction import BrainExtractionSettings
from .errors import Cancelled, InputError
from .images import read_image
from .inference import InferenceSettings, Segmenter, core_subsets
from .labels import ED, ET, NCR, VOLUMES, from_internal
from .modalities import DISPLAY_NAMES, reference_modality
from .modelcard import ModelCard
from .network_space import carried_back
from .output_paths import write_image_atomic, write_text_atomic
from .postprocessing import (CorelessCluster, PostprocessSettings, StrayCoreCluster, classes_from_probabilities,
                             coreless_clusters, edge_faces, stray_core_clusters)
from .preprocessing import PreparedCase, Preprocessor, PreprocessSettings, model_grid_shape, resize, stack_channels
from .protocol import DONE, REFIT_BIAS, STAGE_WEIGHTS
from .resources import default_model_card, native_exam_model_card
from .rano import measure_lesions
from .reliability import subset_warnings
from .sequence_check import SequenceChecker, SequenceCheckSettings
from .settings import RunSettings

if TYPE_CHECKING:
    from .dicom_series import DicomStudy

ProgressCallback = Callable[[str, float], None]


class CancelToken:
    """Set from any thread to stop a run at the next checkpoint."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        if self._event.is_set():
            raise Cancelled("cancelled by the user")


@dataclass(frozen=True)
class SegmentationSettings:
    """All options of one run."""

    preprocess: PreprocessSettings = PreprocessSettings()
    inference: InferenceSettings = InferenceSettings()
    postprocess: PostprocessSettings = PostprocessSettings()
    label_convention: str = "brats2021"
    sequence_check: SequenceCheckSettings = SequenceCheckSettings()

    @classmethod
    def from_run(cls, run: RunSettings) -> SegmentationSettings:
        """The engine's settings for what a user set."""
        return cls(preprocess=PreprocessSettings(bias_correction=run.bias_correction, register=run.register,
                                                 skull_strip=run.skull_strip, network_space=run.network_space,
                                                 brain_extraction=BrainExtractionSettings(method=run.brain_extraction)),
                   inference=InferenceSettings(device=run.device, tta=run.tta, amp=not run.fp32),
                   postprocess=PostprocessSettings(min_cluster_ml=run.min_cluster_ml),
                   label_convention=run.label_convention,
                   sequence_check=SequenceCheckSettings(enabled=not run.trust_sequences))


@dataclass
class SegmentationReport:
    """What a run did: inputs, timings per stage, device, warnings and tumour volumes."""

    inputs: dict[str, str] = field(default_factory=dict)
    reference: str = ""
    output: str = ""
    probability_map: str = ""
    model: str = ""
    device: str = ""
    precision: str = ""
    label_convention: str = "brats2021"
    stage_seconds: dict[str, float] = field(default_factory=dict)
    total_seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)
    volumes_ml: dict[str, float] = field(default_factory=dict)
    fingerprint: str = ""  # batch: hash of the inputs, settings and model that made this result (to resume)
    rano: dict = field(default_factory=dict)  # braintumorseg.rano.RanoMeasurement.to_dict()
    registration: list[dict] = field(default_factory=list)  # per sequence: registered?, edge alignment, rating
    skull_stripping: str = ""
    network_space: str = ""
    thick_slices: list[str] = field(default_factory=list)  # inputs with slices > 2.5 mm apart (see `tta_plan`)
    n4_without_tumour_ml: float | None = None  # N4 fitted without this much first-pass tumour (`refit_bias`)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


@dataclass
class PreparedInputs:
    """A case after the CPU stages, ready for the network; picklable, so one process may prepare it for another."""

    case: PreparedCase
    report: SegmentationReport
    seconds: float  # spent so far on this case
    done: float  # progress fraction so far
    weights: dict[str, float]


def models_for(model: str | os.PathLike | None = None) -> tuple[ModelCard, ModelCard | None]:
    """The given model card alone, or the shipped pair: the default and the one for scanner-native exams."""
    if model:
        return ModelCard.load(model), None
    native = native_exam_model_card()
    return ModelCard.load(default_model_card()), ModelCard.load(native) if native else None


def models_in_words(card: ModelCard, native_card: ModelCard | None = None) -> str:
    """"name version", and the scanner-native model's beside it."""
    words = f"{card.name} {card.version}"
    if native_card is not None:
        words += f" ({native_card.name} {native_card.version} for scanner-native exams)"
    return words


def tumour_volumes_ml(classes: np.ndarray, spacing: tuple[float, ...]) -> dict[str, float]:
    """Volumes in mL of each class and of tumour core and whole tumour."""
    voxel_ml = float(np.prod(spacing)) / 1000.0
    counts = {c: int(np.count_nonzero(classes == c)) for c in (NCR, ED, ET)}
    return {v.key: round(sum(counts[c] for c in v.classes) * voxel_ml, 3) for v in VOLUMES}


class Pipeline:
    """Segments cases; reusable across cases (each model is loaded once). `native_card`, when given, is the
    model for scanner-native exams (`card_for`); `card` segments the rest."""

    def __init__(self, card: ModelCard, settings: SegmentationSettings = SegmentationSettings(),
                 progress: ProgressCallback | None = None, cancel: CancelToken | None = None,
                 native_card: ModelCard | None = None):
        if native_card is not None and (native_card.channels != card.channels or
                                        native_card.normalization != card.normalization):
            raise InputError(f"the model for scanner-native exams ({native_card.name} {native_card.version}) "
                             f"reads other channels or another normalization than {card.name} {card.version}; "
                             "give models that share them.")
        self.card = card
        self.native_card = native_card
        self.settings = settings
        self.progress = progress or (lambda stage, fraction: None)
        self.cancel = cancel or CancelToken()
        self.preprocessor = Preprocessor(settings.preprocess, card.normalization)
        self.sequence_checker = SequenceChecker(settings.sequence_check)
        self._segmenters: dict[int, Segmenter] = {}  # by id() of the card: each loaded once, when first needed
        self._whole_tumour: tuple[np.ndarray, PreparedCase] | None = None  # last run's WT probability, its case
        self._report = SegmentationReport()
        self._done = 0.0
        self._weights: dict[str, float] = {}

    @classmethod
    def from_settings(cls, run: RunSettings, progress: ProgressCallback | None = None,
                      cancel: CancelToken | None = None) -> Pipeline:
        """Load the model card (the given one, else the shipped pair: the default and the one for scanner-native
        exams), set the thread count, build the pipeline."""
        if run.threads:
            torch.set_num_threads(run.threads)
            sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(run.threads)
        card, native_card = models_for(run.model)
        return cls(card, SegmentationSettings.from_run(run), progress, cancel, native_card)

    @contextmanager
    def _stage(self, name: str) -> Iterator[None]:
        self.progress(name, self._done)
        self.cancel.check()
        start = time.perf_counter()
        yield
        seconds = time.perf_counter() - start
        self._report.stage_seconds[name] = round(self._report.stage_seconds.get(name, 0.0) + seconds, 3)
        self._done = min(1.0, self._done + self._weights.get(name, 0.0))
        self.progress(name, self._done)

    def segment_files(self, inputs: Mapping[str, str | os.PathLike] | DicomStudy, output: str | os.PathLike,
                      report_path: str | os.PathLike | None = None,
                      probability_path: str | os.PathLike | None = None) -> SegmentationReport:
        """Read the inputs (image files by modality, or a DICOM study), segment, write the label map (and
        probability map, report) atomically."""
        self._start(files=True)
        images = self._read(inputs)
        if self.native_card is None:  # else the case's model is known after preprocessing
            self._load_model(self.card)
        return self.finish_files(self._prepared(images), output, report_path, probability_path)

    def prepare_files(self, inputs: Mapping[str, str | os.PathLike] | DicomStudy) -> PreparedInputs:
        """The CPU stages alone (read, align, mask, N4, normalize), without the model: the first half of
        `segment_files`, which another process may run; `finish_files` does the rest."""
        self._start(files=True)
        return self._prepared(self._read(inputs))

    def finish_files(self, prepared: PreparedInputs, output: str | os.PathLike,
                     report_path: str | os.PathLike | None = None,
                     probability_path: str | os.PathLike | None = None) -> SegmentationReport:
        """Network, post-processing and writing for inputs `prepare_files` prepared; the report is written last."""
        self._report, self._done, self._weights = prepared.report, prepared.done, prepared.weights
        self._wall = time.perf_counter() - prepared.seconds
        labels = self._finish(prepared.case)
        self.cancel.check()
        with self._stage("write output"):
            self._report.output = str(output)
            self._report.probability_map = str(probability_path or "")
            write_image_atomic(labels, output)
            written = [output]
            self._report.total_seconds = round(time.perf_counter() - self._wall, 3)
            try:
                if probability_path:
                    write_image_atomic(probability_percent(*self._whole_tumour), probability_path)
                    written.append(probability_path)
                if report_path:
                    write_text_atomic(self._report.to_json() + "\n", report_path)
            except BaseException:
                for path in written:  # no result without all that was asked for
                    Path(path).unlink(missing_ok=True)
                raise
        self.progress(DONE.name, 1.0)
        return self._report

    def _read(self, inputs: Mapping[str, str | os.PathLike] | DicomStudy) -> dict[str, sitk.Image]:
        if not inputs:
            raise InputError("no input volume given: give at least one of --t1, --t1c, --t2, --flair.")
        if isinstance(inputs, Mapping):  # a DICOM study's series were chosen from their headers
            self.sequence_checker.check_names(inputs)
        with self._stage("load inputs"):
            if isinstance(inputs, Mapping):
                images = {m: read_image(p, DISPLAY_NAMES.get(m, m)) for m, p in inputs.items()}
                self._report.inputs = {m: str(p) for m, p in inputs.items()}
            else:  # a DICOM study (dicom_series.DicomStudy): its series are chosen and read here
                images = inputs.read_images()
                self._report.inputs = inputs.described()
                self._report.warnings.extend(inputs.warnings)
        return images

    def _prepared(self, images: dict[str, sitk.Image]) -> PreparedInputs:
        case = self._prepare(images)
        return PreparedInputs(case, self._report, round(time.perf_counter() - self._wall, 3), self._done,
                              self._weights)

    def segment_images(self, images: dict[str, sitk.Image]) -> tuple[sitk.Image, SegmentationReport]:
        """Segment images already in memory (e.g. from Slicer); returns the label map and report."""
        self._start(files=False)
        labels = self._segment(images)
        self._report.total_seconds = round(time.perf_counter() - self._wall, 3)
        self.progress(DONE.name, 1.0)
        return labels, self._report

    def _start(self, files: bool) -> None:
        self._report = SegmentationReport(model=f"{self.card.name} {self.card.version}",
                                          label_convention=self.settings.label_convention)
        self._done = 0.0
        self._wall = time.perf_counter()
        skipped = {"load model"} if all(id(c) in self._segmenters for c in self._cards()) else set()
        if not self.settings.preprocess.bias_correction:
            skipped |= {"bias correction", REFIT_BIAS}
        if not self._refits_bias():
            skipped.add(REFIT_BIAS)
        if not files:
            skipped |= {"load inputs", "write output"}
        planned = {k: v for k, v in STAGE_WEIGHTS.items() if k not in skipped}
        self._weights = {k: v / sum(planned.values()) for k, v in planned.items()}

    def _segment(self, images: dict[str, sitk.Image]) -> sitk.Image:
        return self._finish(self._prepare(images))

    def _cards(self) -> list[ModelCard]:
        return [self.card] + ([self.native_card] if self.native_card is not None else [])

    def _refits_bias(self) -> bool:
        """Whether a model of this pipeline was trained on N4 fitted without the tumour (`_finish` refits it)."""
        return any(card.n4_without_tumour for card in self._cards())

    def models(self) -> str:
        """The models this pipeline segments with, in words."""
        return models_in_words(self.card, self.native_card)

    def card_for(self, prepared: PreparedCase) -> ModelCard:
        """The model that segments this case: the scanner-native one for an exam on several grids, registered or
        skull-stripped here (`PreparedCase.scanner_native`), when the pipeline has one; else the default."""
        return self._card_for(prepared.scanner_native)

    def _card_for(self, scanner_native: bool) -> ModelCard:
        return self.native_card if self.native_card is not None and scanner_native else self.card

    def _refits_bias_for(self, scanner_native: bool) -> bool:
        return self._card_for(scanner_native).n4_without_tumour

    def _load_model(self, card: ModelCard) -> Segmenter:
        if id(card) not in self._segmenters:
            with self._stage("load model"):
                self._segmenters[id(card)] = Segmenter(card, self.settings.inference)
        return self._segmenters[id(card)]

    def _prepare(self, images: dict[str, sitk.Image]) -> PreparedCase:
        if not images:
            raise InputError("no input volume given: give at least one of T1, T1Gd, T2, FLAIR.")
        self._report.reference = reference_modality(list(images))
        usable = {m: i for m, i in images.items() if m in self.card.channels}
        if not usable:
            raise InputError(f"the model uses {', '.join(self.card.channels)}; none of these was given.")
        prepared = self.preprocessor.run(usable, self._stage, self.cancel.check, self._refits_bias_for)
        if self._refits_bias_for(prepared.scanner_native) and prepared.uncorrected:
            # N4 was left to the refit: its share of the progress too
            self._weights[REFIT_BIAS] = self._weights.get(REFIT_BIAS, 0.0) + self._weights.pop("bias correction", 0.0)
        else:
            prepared.uncorrected = {}  # kept only for a model that refits N4 (`_finish`); it travels with the case
        self._report.registration = [asdict(r) for r in prepared.alignment]
        self._report.skull_stripping = prepared.skull_stripping
        self._report.network_space = prepared.network_space
        self._report.thick_slices = list(prepared.thick_slices)
        self._report.warnings.extend(prepared.warnings)
        self._report.warnings.extend(self.sequence_checker.contrast_warnings(prepared.channels, prepared.mask,
                                                                             prepared.spacing_zyx))
        return prepared

    def _finish(self, prepared: PreparedCase) -> sitk.Image:
        card = self.card_for(prepared)
        segmenter = self._load_model(card)
        self._report.model = f"{card.name} {card.version}"
        self._report.warnings.extend(subset_warnings(card.channels, card.metrics, list(prepared.channels)))
        if card.n4_without_tumour and prepared.uncorrected:
            with self._stage(REFIT_BIAS):
                first = self._infer(prepared, segmenter, tta=False)
                tumour = first[0] > card.threshold
                prepared.channels = self.preprocessor.refit_bias(prepared, tumour, self.cancel.check)
                self._report.n4_without_tumour_ml = round(float(tumour.sum() * np.prod(prepared.spacing_zyx)) / 1000,
                                                          1)
        with self._stage("inference"):
            probabilities = self._infer(prepared, segmenter)
            self._whole_tumour = (probabilities[0].copy(), prepared)  # a map is made only when one is asked for
        with self._stage("post-processing"):
            classes, box, spacing = self._classes_on_output_grid(probabilities, prepared, card.threshold)
            self._report.volumes_ml = tumour_volumes_ml(classes, spacing)
            islands = coreless_clusters(classes[box], spacing)
            self._report.warnings.extend(island_warnings(islands))
            self._report.warnings.extend(core_cluster_warnings(
                stray_core_clusters(classes[box], spacing, edge_faces(prepared.output_grid, box))))
            self._report.rano = measure_lesions(classes, prepared.output_grid).to_dict()
            labels = sitk.GetImageFromArray(from_internal(classes, self.settings.label_convention))
            labels.CopyInformation(prepared.output_grid)
        self._report.device = str(segmenter.device)
        self._report.precision = segmenter.precision
        self._report.warnings.extend(segmenter.warnings)
        return labels

    def _classes_on_output_grid(self, probabilities: np.ndarray, prepared: PreparedCase, threshold: float
                                ) -> tuple[np.ndarray, tuple[slice, ...], tuple[float, ...]]:
        """Internal classes on the output grid, the box that holds them and the grid's (z, y, x) spacing; results
        from another network grid are carried back as probabilities, then thresholded."""
        if prepared.native is None:
            classes = np.zeros(sitk.GetArrayViewFromImage(prepared.reference).shape, np.uint8)
            classes[prepared.box] = classes_from_probabilities(
                probabilities, prepared.spacing_zyx, self.settings.postprocess, threshold)
            return classes, prepared.box, prepared.spacing_zyx
        spacing = tuple(float(s) for s in prepared.native.GetSpacing()[::-1])
        on_native = carried_back(on_full_grid(probabilities, prepared), prepared.reference, prepared.native)
        classes = classes_from_probabilities(on_native, spacing, self.settings.postprocess, threshold)
        return classes, (slice(None),) * 3, spacing

    def _infer(self, prepared: PreparedCase, segmenter: Segmenter, tta: bool | None = None) -> np.ndarray:
        on_model_grid, cropped_shape = model_input_for_case(prepared, segmenter.card)
        probabilities = segmenter.predict(on_model_grid, self.cancel.check,
                                          core_subsets(prepared.thick_slices, list(prepared.channels)), tta)
        return resize(torch.from_numpy(probabilities), cropped_shape).numpy()


def probability_percent(probability: np.ndarray, prepared: PreparedCase) -> sitk.Image:
    """A region's probability (before post-processing) in whole percent on the reference grid, 0 outside the
    brain's box: the band between 20 and 50 % is where the model hesitated."""
    probability = on_full_grid(probability[None], prepared)
    if prepared.native is not None:
        probability = carried_back(probability, prepared.reference, prepared.native)
    image = sitk.GetImageFromArray(np.rint(np.clip(probability[0], 0.0, 1.0) * 100).astype(np.uint8))
    image.CopyInformation(prepared.output_grid)
    return image


def on_full_grid(values: np.ndarray, prepared: PreparedCase) -> np.ndarray:
    """(channels, box) values on the whole network grid, 0 outside the brain's box."""
    full = np.zeros((len(values),) + sitk.GetArrayViewFromImage(prepared.reference).shape, np.float32)
    full[(slice(None),) + tuple(prepared.box)] = values
    return full


def island_warnings(clusters: list[CorelessCluster], listed: int = 3) -> list[str]:
    """One line per cluster of edema without core (the largest `listed`), asking the reader to check it."""
    lines = [f"a separate {c.volume_ml:.1f} mL cluster of edema without tumour core, {c.distance_mm:.0f} mm from "
             "the centre of the tumour: a satellite lesion or a false island; check it (Segment Editor, Islands "
             "effect) before measuring." for c in clusters[:listed]]
    if len(clusters) > listed:
        rest = clusters[listed:]
        lines.append(f"{len(rest)} more such clusters, of {sum(c.volume_ml for c in rest):.1f} mL together.")
    return lines


def core_cluster_warnings(clusters: list[StrayCoreCluster], listed: int = 3) -> list[str]:
    """One line per stray cluster of tumour core (the largest `listed`): far from the tumour or at the images' edge."""
    lines = []
    for c in clusters[:listed]:
        where = [f"{c.distance_mm:.0f} mm from the main tumour core"] if c.distance_mm > 0 else []
        if c.at_edge:
            where.append("touching the edge of the imaged volume, where false tumour is common (thick slices end "
                         "there)" if c.distance_mm > 0 else "touching the edge of the imaged volume: the tumour may "
                         "extend beyond the images, or the edge slice gave false tumour")
        lines.append(f"a {c.volume_ml:.1f} mL cluster of tumour core ({c.enhancing_ml:.1f} mL enhancing) "
                     f"{' and '.join(where)}: check it (Segment Editor, Islands effect) before measuring.")
    if len(clusters) > listed:
        rest = clusters[listed:]
        lines.append(f"{len(rest)} more such core clusters, of {sum(c.volume_ml for c in rest):.1f} mL together.")
    return lines


def model_input_for_case(prepared: PreparedCase, card: ModelCard) -> tuple[np.ndarray, tuple[int, ...]]:
    """The (channels, z, y, x) model-grid array for a prepared case, and the cropped shape it came from."""
    volume = torch.from_numpy(stack_channels(prepared.channels, card.channels))
    grid = model_grid_shape(volume.shape[1:], prepared.spacing_zyx, tuple(reversed(card.spacing)))
    return resize(volume, grid).numpy(), tuple(volume.shape[1:])

