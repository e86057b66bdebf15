"""The records of RANO measurements (diameters, lesions, an exam's measurement), the criteria's numbers and the
text they print, without imaging libraries: the Slicer panel reads them before any heavy import.

RANO 2.0: Wen et al., J Clin Oncol 2023; RANO 2010: Wen et al., J Clin Oncol 2010 (docs/rano.md).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

CONNECTIVITY = 26  # 3D: faces, edges and corners (scipy structure of ones 3×3×3)
LESION_COLOURS = ("#ffd700", "#00bfff", "#ff4fa3", "#7cfc00", "#ff8c00")  # lesion 1, 2, ... (report and Slicer)
COMPLETE, PARTIAL, STABLE, PROGRESSION = ("complete response", "partial response", "stable disease",
                                          "progressive disease")
NOT_EVALUABLE = "not evaluable"
DISCLAIMER = ("Imaging measurements only: steroid dose, clinical status, confirmation scans and the "
              "pseudoprogression window are the reader's to add before a RANO category is assigned.")


@dataclass(frozen=True)
class RanoCriteria:
    """The numbers of one version of the criteria (RANO 2.0: Wen et al., J Clin Oncol 2023)."""

    name: str = "RANO 2.0"
    max_targets: int = 3
    min_diameter_mm: float = 10.0
    thick_slice_mm: float = 5.0  # slices thicker than this: both diameters at least twice the slice thickness
    min_slices: int = 2
    partial_response_decrease: float = 50.0  # % of the sum of products
    progression_increase: float = 25.0
    volume_partial_response_decrease: float = 65.0  # % of the enhancing volume
    volume_progression_increase: float = 40.0
    any_new_lesion_progresses: bool = False  # RANO 2.0: a new measurable lesion is progression; RANO 2010: any


    def minimum_diameter(self, slice_thickness_mm: float) -> float:
        if slice_thickness_mm > self.thick_slice_mm:
            return 2.0 * slice_thickness_mm
        return self.min_diameter_mm


RANO_2_0 = RanoCriteria()
RANO_2010 = RanoCriteria(name="RANO 2010", max_targets=5, any_new_lesion_progresses=True)  # Wen et al., J Clin Oncol 2010
CRITERIA = {"2.0": RANO_2_0, "2010": RANO_2010}


@dataclass
class Diameter:
    length_mm: float
    start: tuple[float, float, float]  # physical point (ITK LPS, mm)
    end: tuple[float, float, float]


@dataclass
class Lesion:
    """One enhancing lesion: its volume and its bidimensional measurement."""

    id: int  # 1 = largest product
    volume_ml: float  # enhancing voxels only
    core_volume_ml: float  # enhancing + necrotic/non-enhancing core of the component
    slices: int  # measurement-plane slices holding enhancing voxels
    slice: int  # index of the measured slice along the measurement grid's slice axis
    longest: Diameter
    perpendicular: Diameter
    product_mm2: float
    measurable: bool
    reason: str  # why it is not measurable ("" when it is)
    necrotic_centre: bool
    centroid: tuple[float, float, float]  # physical point (LPS) of its enhancing voxels
    target: bool = False


@dataclass
class RanoMeasurement:
    """The exam's lesions, targets, sum of products and volumes of enhancing and non-enhancing disease."""

    criteria: str
    plane: str
    plane_note: str
    slice_thickness_mm: float
    min_diameter_mm: float
    connectivity: int
    lesions: list[Lesion] = field(default_factory=list)
    targets: list[int] = field(default_factory=list)
    non_measurable: list[int] = field(default_factory=list)
    sum_of_products_mm2: float = 0.0
    enhancing_ml: float = 0.0
    non_enhancing_ml: float = 0.0  # T2/FLAIR abnormality outside the enhancing tumour: edema + necrotic core
    necrotic_core_ml: float = 0.0
    edema_ml: float = 0.0
    seconds: float = 0.0
    note: str = DISCLAIMER

    def to_dict(self) -> dict:
        return asdict(self)

    def with_products(self, products: dict[int, float]) -> "RanoMeasurement":
        """A copy with the products of some lesions replaced (the reader's lines) and the sum of the targets'
        products made again; the diameters stay the engine's."""
        if not products:
            return self
        copy = RanoMeasurement.from_dict(self.to_dict())
        for lesion in copy.lesions:
            lesion.product_mm2 = round(float(products.get(lesion.id, lesion.product_mm2)), 2)
        copy.sum_of_products_mm2 = round(sum(l.product_mm2 for l in copy.lesions if l.target), 2)
        return copy

    @classmethod
    def from_dict(cls, data: dict) -> "RanoMeasurement":
        def diameter(value: dict) -> Diameter:
            return Diameter(value["length_mm"], tuple(value["start"]), tuple(value["end"]))
        lesions = [Lesion(**{**lesion, "longest": diameter(lesion["longest"]), "centroid": tuple(lesion["centroid"]),
                             "perpendicular": diameter(lesion["perpendicular"])}) for lesion in data["lesions"]]
        return cls(**{**data, "lesions": lesions})


def lesion_colour(lesion_id: int) -> str:
    """The colour of a lesion's lines, the same in the report and in Slicer."""
    return LESION_COLOURS[(lesion_id - 1) % len(LESION_COLOURS)]



def measurement_lines(result: RanoMeasurement) -> str:
    """The measurements as text lines for the command line."""
    lines = [f"  {result.criteria} measurements ({result.plane}, slices {result.slice_thickness_mm:g} mm, "
             f"measurable from {result.min_diameter_mm:g} mm):"]
    for lesion in result.lesions:
        kind = "target" if lesion.target else ("measurable" if lesion.measurable else "non-measurable")
        lines.append(f"    lesion {lesion.id} ({kind}): {lesion.longest.length_mm:.1f} × "
                     f"{lesion.perpendicular.length_mm:.1f} mm = {lesion.product_mm2:.0f} mm² on slice "
                     f"{lesion.slice}, {lesion.volume_ml:.2f} mL enhancing"
                     + (f"; {lesion.reason}" if lesion.reason else "")
                     + ("; necrotic centre spanned" if lesion.necrotic_centre else ""))
    if not result.lesions:
        lines.append("    no enhancing lesion")
    lines.append(f"    sum of products of the targets {result.sum_of_products_mm2:.0f} mm²; enhancing "
                 f"{result.enhancing_ml:.2f} mL, non-enhancing (T2/FLAIR) {result.non_enhancing_ml:.2f} mL")
    lines.append(f"    {result.note}")
    return "\n".join(lines)
