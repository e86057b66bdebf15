"""DICOM studies in: find the MR series below a folder, take T1, T1Gd, T2 and FLAIR from their metadata, read them.

Headers are read with pydicom, pixel data with SimpleITK's series reader (single-frame MR) or highdicom's volume
reader (multi-frame, Enhanced MR). Each series is classified from its description and protocol name, the contrast
agent attributes and the sequence parameters (TR, TE, TI, scanning sequence, sequence name); localizers, derived
images (reformats, maps, projections) and non-MR objects are excluded with a reason. A choice is ambiguous when
two series are taken for one sequence: the user picks one with --t1c SERIES (a series UID or number).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .errors import InputError
from .images import check_image
from .modalities import MODALITIES, SHORT_NAMES

MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
ENHANCED_MR = "1.2.840.10008.5.1.4.1.1.4.1"
LEGACY_ENHANCED_MR = "1.2.840.10008.5.1.4.1.1.4.4"
MR_STORAGE = {MR_IMAGE: "MR", ENHANCED_MR: "Enhanced MR", LEGACY_ENHANCED_MR: "Legacy Converted Enhanced MR"}
MIN_SLICES = 8
GAP_TOLERANCE = 0.25  # a slice step more than 25 % off the series' usual step means missing or extra slices

# Name rules, tried in order on the series description and protocol name (lower case, as tokens).
# Sources of these names: docs/dicom.md.
_EXCLUDED_NAMES = (
    ("localizer", r"locali[sz]er|(^|[\s_\-])loc($|[\s_\-])|scout|survey|pilot|3[\s_\-]?pl(ane)?|tri[\s_\-]?pilot|"
                  r"aahead|(^|[\s_\-])plan($|[\s_\-])"),
    ("a derived series (reformat, projection, map or subtraction)",
     r"(^|[\s_\-])(mip|minip|reformat\w*|projected|projection|sub(traction)?|adc|fa|trace|cbv|cbf|mtt|"
     r"ttp|moco|colfa|tensor)($|[\s_\-(])"),
    ("diffusion, perfusion, angiography, susceptibility or spectroscopy",
     r"dwi|diff|difus|dmri|dti|dki|ep2d|b1000|perf|dsc|dce|(^|[\s_\-\d])asl|swi|swan|t2\*|t2star|"
     r"t2[\s_\-]*(eg|gre|ge|ffe|fe)($|[\s_\-])|(^|[\s_\-])(gre|fl2d)[\s_\-]?hemo|"
     r"angio|(^|[\s_\-])(mra|tof|pc)($|[\s_\-])|svs|csi|spectro|press|bold|fmri|field[\s_\-]?map|b0map|"
     r"(^|[\s_\-])(pd|pdw|pd[\s_\-]?fs|stir)($|[\s_\-])"),
)
_T1_FLAIR = r"t1[\s_\-]?(w[\s_\-]?)?flair"
_FLAIR = r"flair|dark[\s_\-]?fluid|tirm|(^|[\s_\-])t2f($|[\s_\-])|(^|[\s_\-])fla($|[\s_\-])"
_T1 = (r"(^|[\s_\-+])t1(w|ce|c|gd|n)?($|[\s_\-+])|t1w|mp[\s_\-]?rage|mp2rage|bravo|spgr|fspgr|(^|[\s_\-])tfe|"
       r"vibe|(^|[\s_\-])flash|(^|[\s_\-])tfl|t1[\s_\-]?(se|tse|fse|mprage|space|vibe|tfe|ffe|gre)")
_T2 = r"(^|[\s_\-])t2(w)?($|[\s_\-])|t2w|t2[\s_\-]?(tse|fse|frfse|space|cube|blade|propeller|se)"
_POST = (r"(^|[\s_\-+(])(post|gad|gd|ce|c\+|\+c|\+gd|gado|contrast|km|\+km|mdc|t1c|t1ce|t1gd|iv)"
         r"($|[\s_\-+)])|post[\s_\-]?(gad|gd|contrast|c)|\+[\s_]?(c|gd|gad)($|[\s_\-])|w[\s_\-]?gad|with[\s_\-]?c")
_PRE = r"(^|[\s_\-(])(pre|pre[\s_\-]?(gad|gd|contrast|c)|native|nativ|w/?o|avant|sans|sin|without)($|[\s_\-)])"
_NO_AGENT = {"", "none", "no", "n", "nil", "0", "-"}


@dataclass
class Series:
    """One DICOM series: where its files are, what its headers say, and what it was taken for."""

    uid: str
    number: int | None
    description: str
    files: list[Path]
    study_uid: str = ""
    sop_class: str = ""
    frames: int = 1
    headers: dict[str, str] = field(default_factory=dict)  # the attributes the rules read, as shown to users
    modality: str | None = None  # t1, t1c, t2 or flair once classified
    reason: str = ""  # why it was taken for that, or why it was excluded
    problem: str = ""  # why it is not one readable volume (it cannot be chosen, not even by an override)

    @property
    def label(self) -> str:
        number = f"series {self.number}" if self.number is not None else f"series {self.uid}"
        return f"{number} '{self.description}'" if self.description else number

    def summary(self) -> str:
        taken = SHORT_NAMES[self.modality] if self.modality else "not used"
        return f"{self.label} ({len(self.files)} file(s)): {taken}: {self.reason}" + (
            f"; {self.problem}" if self.problem else "")


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value).strip()


def _number(value) -> float | None:
    try:
        return float(value[0] if type(value).__name__ == "MultiValue" else value)
    except (TypeError, ValueError, IndexError):
        return None


def _find(dataset, keyword: str):
    """An attribute at the top level, else in the shared then the first per-frame functional group (Enhanced MR)."""
    if keyword in dataset:
        return dataset.get(keyword)
    for groups in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        for group in (dataset.get(groups) or [])[:1]:
            for macro in group:
                if macro.VR == "SQ":
                    for item in macro.value[:1]:
                        if keyword in item:
                            return item.get(keyword)
    return None


def header_fields(dataset) -> dict[str, str]:
    """The attributes the rules read, as text ('' when absent); for Enhanced MR from its functional groups."""
    names = ("SeriesDescription", "ProtocolName", "SequenceName", "PulseSequenceName", "ScanningSequence",
             "SequenceVariant", "MRAcquisitionType", "ImageType", "ContrastBolusAgent", "ContrastBolusVolume",
             "ContrastBolusStartTime", "Manufacturer", "Modality")
    fields = {name: _text(_find(dataset, name)) for name in names}
    fields["RepetitionTime"] = _text(_find(dataset, "RepetitionTime"))
    fields["EchoTime"] = _text(_find(dataset, "EchoTime") or _find(dataset, "EffectiveEchoTime"))
    fields["InversionTime"] = _text(_find(dataset, "InversionTime") or _find(dataset, "InversionTimes"))
    if "ContrastBolusUsageSequence" in dataset or _find(dataset, "ContrastBolusAgentAdministered") == "YES":
        fields["ContrastBolusAgent"] = fields["ContrastBolusAgent"] or "given (Contrast/Bolus Usage)"
    if not fields["ContrastBolusAgent"] and dataset.get("ContrastBolusAgentSequence"):
        fields["ContrastBolusAgent"] = _text(dataset.ContrastBolusAgentSequence[0].get("CodeMeaning"))
    return fields


def _search(pattern: str, text: str) -> bool:
    return re.search(pattern, text) is not None


def classify(fields: dict[str, str]) -> tuple[str | None, str]:
    """Take a series for T1, T1Gd, T2 or FLAIR from its header fields; (None, why) when it is none of them."""
    names = " / ".join(dict.fromkeys(n for n in (fields.get("SeriesDescription", ""), fields.get("ProtocolName", ""))
                                     if n))
    name = names.lower()
    image_type = fields.get("ImageType", "").upper().split("\\")
    if "LOCALIZER" in image_type:
        return None, "a localizer (ImageType LOCALIZER)"
    if "DERIVED" in image_type:
        return None, f"derived images (ImageType {fields['ImageType']}), not an acquired series"
    for what, pattern in _EXCLUDED_NAMES:
        if _search(pattern, name):
            return None, f"{what} (name '{names}')"
    weighting, evidence = _weighting_from_name(name, names)
    if weighting is None:
        weighting, evidence = _weighting_from_parameters(fields)
    if weighting is None:
        return None, evidence
    if weighting != "t1":
        return weighting, evidence
    agent = fields.get("ContrastBolusAgent", "").strip()
    if agent.lower() not in _NO_AGENT:
        return "t1c", f"{evidence}; contrast agent '{agent}' in the header"
    if _search(_PRE, name):
        return "t1", f"{evidence}; named pre-contrast"
    if _search(_POST, name):
        return "t1c", f"{evidence}; named post-contrast, no agent in the header"
    return "t1", f"{evidence}; no contrast agent in the header or the name"


def _weighting_from_name(name: str, shown: str) -> tuple[str | None, str]:
    if _search(_T1_FLAIR, name):
        return "t1", f"T1-weighted FLAIR by its name '{shown}'"
    for modality, pattern in (("flair", _FLAIR), ("t2", _T2), ("t1", _T1)):
        if _search(pattern, name):
            return modality, f"{SHORT_NAMES[modality]} by its name '{shown}'"
    return None, ""


def _weighting_from_parameters(fields: dict[str, str]) -> tuple[str | None, str]:
    """T1, T2 or FLAIR from TR, TE, TI and the scanning sequence, when the name says nothing."""
    tr, te, ti = (_number(fields.get(k, "").split("\\")[0]) for k in ("RepetitionTime", "EchoTime", "InversionTime"))
    sequence = fields.get("ScanningSequence", "").upper()
    shown = f"TR {tr or '?'} ms, TE {te or '?'} ms" + (f", TI {ti} ms" if ti else "") + (
        f", {sequence}" if sequence else "")
    if tr is None or te is None:
        return None, "no name rule matched and TR/TE are missing"
    if ti:  # inversion recovery
        if ti >= 1500 and te >= 60:
            return "flair", f"FLAIR by its parameters ({shown})"
        if 300 <= ti < 1500 and te < 30:
            return "t1", f"T1 by its parameters ({shown}: inversion recovery T1, e.g. MPRAGE)"
        return None, f"an inversion-recovery series that is neither FLAIR nor T1 ({shown})"
    if te >= 60 and tr >= 1500:
        return "t2", f"T2 by its parameters ({shown})"
    if te <= 30 and tr <= 1000 and ("GR" not in sequence or te < 10):
        return "t1", f"T1 by its parameters ({shown})"
    return None, f"no name rule matched and the parameters fit no rule ({shown})"


# ---- discovery ---------------------------------------------------------------------------------

def _read_header(path: Path):
    import pydicom
    from pydicom.errors import InvalidDicomError
    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except (InvalidDicomError, OSError, ValueError, EOFError, KeyError, TypeError):
        return None


def find_series(folder: str | Path) -> list[Series]:
    """Every DICOM image series below a folder, classified; files that are not DICOM are skipped."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"DICOM folder {folder} is not a folder; give the folder that holds the study's files.")
    by_uid: dict[str, Series] = {}
    first: dict[str, object] = {}
    positions: dict[str, list[tuple]] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        dataset = _read_header(path)
        uid = _text(dataset.get("SeriesInstanceUID")) if dataset is not None else ""
        if not uid or "SOPClassUID" not in dataset:
            continue  # not DICOM, or a DICOMDIR
        series = by_uid.get(uid)
        if series is None:
            number = _number(dataset.get("SeriesNumber"))
            series = by_uid[uid] = Series(
                uid, int(number) if number is not None else None,
                _text(dataset.get("SeriesDescription")) or _text(dataset.get("ProtocolName")), [],
                _text(dataset.get("StudyInstanceUID")), _text(dataset.get("SOPClassUID")),
                int(_number(dataset.get("NumberOfFrames")) or 1))
            first[uid] = dataset
            positions[uid] = []
        series.files.append(path)
        positions[uid].append(_slice_key(dataset))
    found = sorted(by_uid.values(), key=lambda s: (s.number if s.number is not None else 1 << 30, s.uid))
    for series in found:
        _describe(series, first[series.uid], positions[series.uid])
    return found


def _slice_key(dataset) -> tuple:
    """What every slice of one volume shares (orientation, size, echo) and where it lies."""
    orientation = tuple(np.round(np.asarray(dataset.get("ImageOrientationPatient") or [0] * 6, float), 3))
    position = tuple(float(v) for v in (dataset.get("ImagePositionPatient") or (0.0, 0.0, 0.0)))
    shared = (orientation, dataset.get("Rows"), dataset.get("Columns"), _text(dataset.get("EchoTime")))
    return shared, position


def _describe(series: Series, dataset, keys: list[tuple]) -> None:
    """Classify a series and check that its files make one volume (sorted along the slice normal)."""
    series.headers = header_fields(dataset)
    modality_name = series.headers.get("Modality")
    if modality_name != "MR" or series.sop_class not in MR_STORAGE:
        series.reason = f"not an MR image series (Modality {modality_name or '?'}, SOP class {series.sop_class})"
        return
    series.modality, series.reason = classify(series.headers)
    if series.sop_class != MR_IMAGE or series.frames > 1:
        if len(series.files) > 1:
            series.problem = (f"{len(series.files)} multi-frame ({MR_STORAGE[series.sop_class]}) objects in one "
                              "series, not one volume")
        return
    shared = {k[0] for k in keys}
    if len(shared) > 1:
        echoes = {k[0][3] for k in keys}
        what = f"{len(echoes)} echo times" if len(echoes) > 1 else "several orientations or image sizes"
        series.problem = f"not one volume: its images have {what}"
        return
    if len(series.files) < MIN_SLICES:
        series.problem = f"only {len(series.files)} slice(s), fewer than the {MIN_SLICES} a volume needs"
        return
    orientation = np.asarray(next(iter(shared))[0], float)
    normal = np.cross(orientation[:3], orientation[3:])
    depth = np.array([np.dot(normal, k[1]) for k in keys])
    order = np.argsort(depth, kind="stable")
    series.files = [series.files[i] for i in order]
    steps = np.diff(depth[order])
    usual = float(np.median(steps))
    if usual <= 1e-3 or np.any(steps <= 1e-3):
        series.problem = "not one volume: two or more of its images lie at the same position"
    elif np.any(np.abs(steps - usual) > GAP_TOLERANCE * usual):
        series.problem = (f"incomplete: the slice step varies from {steps.min():.2f} to {steps.max():.2f} mm "
                          f"(usually {usual:.2f} mm), so slices are missing")


# ---- choice ------------------------------------------------------------------------------------

def listing(series: list[Series]) -> str:
    """One line per series: what it was taken for and why."""
    return "; ".join(s.summary() for s in series) if series else "no DICOM image series"


def _override(series: list[Series], given: str, flag: str) -> Series:
    by_uid = [s for s in series if s.uid == given]
    by_number = [s for s in series if given.isdecimal() and s.number == int(given)]
    matches = by_uid or by_number
    if len(matches) > 1:
        raise InputError(f"{flag} {given}: {len(matches)} series have that number ("
                         f"{', '.join(s.uid for s in matches)}); give the series instance UID instead.")
    if not matches:
        raise InputError(f"{flag} {given}: no series with that number or UID in the study; found: {listing(series)}.")
    chosen = matches[0]
    if chosen.headers.get("Modality") != "MR" or chosen.sop_class not in MR_STORAGE:
        raise InputError(f"{flag} {given}: {chosen.label} is {chosen.reason}; choose an MR image series.")
    return chosen


def choose_series(series: list[Series], overrides: dict[str, str] | None = None,
                  where: str = "the study") -> tuple[dict[str, Series], list[str]]:
    """The series to use per modality, and warnings; refuses an ambiguous choice or a study with none.

    `overrides` maps a modality to a series UID or number (--t1c 13); an overridden series is not used elsewhere.
    """
    overrides = overrides or {}
    chosen = {m: _override(series, given, f"--{m}") for m, given in overrides.items() if given}
    taken = {s.uid for s in chosen.values()}
    for modality in MODALITIES:
        if modality in chosen:
            continue
        candidates = [s for s in series if s.modality == modality and s.uid not in taken]
        if len(candidates) > 1:
            raise InputError(
                f"{len(candidates)} series in {where} could be the {SHORT_NAMES[modality]} "
                f"({', '.join(s.label for s in candidates)}); pick one with --{modality} SERIES_NUMBER_OR_UID. "
                f"Series found: {listing(series)}.")
        if candidates:
            chosen[modality] = candidates[0]
    if not chosen:
        raise InputError(f"no T1, T1Gd, T2 or FLAIR series found in {where}; pick series with --t1, --t1c, --t2 "
                         f"or --flair SERIES_NUMBER_OR_UID. Series found: {listing(series)}.")
    for modality, picked in chosen.items():
        if picked.problem:
            raise InputError(f"the {SHORT_NAMES[modality]} series in {where}, {picked.label}, is {picked.problem}; "
                             "export the whole series again or pick another one with "
                             f"--{modality} SERIES_NUMBER_OR_UID.")
    studies = {s.study_uid for s in chosen.values()}
    if len(studies) > 1:
        raise InputError(f"the chosen series in {where} come from {len(studies)} different studies; give one study "
                         "per folder.")
    missing = [SHORT_NAMES[m] for m in MODALITIES if m not in chosen]
    warnings = [f"no {', '.join(missing)} series in {where}; segmenting with "
                f"{', '.join(SHORT_NAMES[m] for m in MODALITIES if m in chosen)}. Series found: {listing(series)}."
                ] if missing else []
    return chosen, warnings


# ---- reading -----------------------------------------------------------------------------------

def read_series(series: Series, what: str) -> sitk.Image:
    """Read one series as a float32 volume; a file that cannot be decoded is one sentence."""
    if series.problem:
        raise InputError(f"{what}: {series.label} is {series.problem}; export the whole series again.")
    try:
        if series.frames > 1 or series.sop_class != MR_IMAGE:
            image = _read_multiframe(series.files[0])
        else:
            reader = sitk.ImageSeriesReader()
            reader.SetFileNames([str(p) for p in series.files])
            image = reader.Execute()
    except (RuntimeError, ValueError, AttributeError, KeyError, IndexError, OSError) as error:
        raise InputError(f"{what}: {series.label} cannot be read ({str(error).strip().splitlines()[-1][:160]}): a "
                         "file of it is corrupt or cut short; export the series again.") from None
    return check_image(image, f"{what} ({series.label})")


def _read_multiframe(path: Path) -> sitk.Image:
    """A multi-frame (Enhanced MR) object as a volume, with highdicom's geometry from its functional groups."""
    import highdicom
    volume = highdicom.imread(str(path)).get_volume()
    if volume.array.ndim != 3 or volume.number_of_channel_dimensions:
        raise ValueError("its frames do not make one 3D volume")
    affine = volume.affine  # (slice, row, column) indices to LPS mm; SimpleITK's (x, y, z) are the reverse
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    image = sitk.GetImageFromArray(np.asarray(volume.array, np.float32))
    direction = affine[:3, :3] / spacing
    image.SetSpacing(tuple(float(s) for s in spacing[::-1]))
    image.SetDirection(tuple(direction[:, ::-1].flatten().tolist()))
    image.SetOrigin(tuple(float(v) for v in affine[:3, 3]))
    return image


@dataclass
class DicomStudy:
    """A DICOM study as pipeline input: its series are found, chosen and read in the 'load inputs' stage."""

    folder: Path
    overrides: dict[str, str] = field(default_factory=dict)
    chosen: dict[str, Series] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def choose(self) -> dict[str, Series]:
        if not self.chosen:
            series = find_series(self.folder)
            self.chosen, self.warnings = choose_series(series, self.overrides, str(self.folder))
        return self.chosen

    def read_images(self) -> dict[str, sitk.Image]:
        """Each chosen series as a volume, by modality."""
        return {m: read_series(s, SHORT_NAMES[m]) for m, s in self.choose().items()}

    def described(self) -> dict[str, str]:
        """What the report lists as inputs: modality → series number, description and UID."""
        return {m: f"{self.folder} {s.label} {s.uid}" for m, s in self.choose().items()}


def first_study_uid(folder: Path, probe: int = 20) -> str:
    """The Study Instance UID of the first DICOM file among the first files below a folder ('' when none)."""
    files = (p for p in sorted(folder.rglob("*")) if p.is_file())
    for _, path in zip(range(probe), files):
        dataset = _read_header(path)
        if dataset is not None and dataset.get("StudyInstanceUID"):
            return str(dataset.StudyInstanceUID)
    return ""


def require_dicom_libraries() -> None:
    """Refuse DICOM input in one sentence when pydicom or highdicom is not installed."""
    try:
        import highdicom  # noqa: F401
        import pydicom  # noqa: F401
    except ImportError:
        raise InputError("reading DICOM needs pydicom and highdicom, which are not installed; install them with "
                         "pip install 'braintumorseg[dicom]'.") from None


def dicom_study(folder: str | Path, overrides: dict[str, str | None] | None = None) -> DicomStudy:
    """A DICOM study to segment, refused before any work when the folder is missing."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"DICOM folder {folder} {'is a file' if folder.exists() else 'does not exist'}; give the "
                         "folder that holds the study's files.")
    require_dicom_libraries()
    return DicomStudy(folder, {m: str(v) for m, v in (overrides or {}).items() if v})


def dicom_case_folders(root: Path) -> list[Path]:
    """The study folders below a root: the root itself when it holds DICOM files or its sub-folders all belong to
    one study (series folders), else each sub-folder holding DICOM (one study per case folder)."""
    files = [p for p in sorted(root.iterdir()) if p.is_file()]
    if files and first_study_uid(root, probe=20) and any(_read_header(p) is not None for p in files[:20]):
        return [root]
    folders = [(p, first_study_uid(p)) for p in sorted(root.iterdir()) if p.is_dir()]
    folders = [(p, uid) for p, uid in folders if uid]
    if len(folders) > 1 and len({uid for _, uid in folders}) == 1:
        return [root]
    return [p for p, _ in folders]
