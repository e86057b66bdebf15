"""Every widget of BrainTumorSeg.ui bound to a parameter must be one the oldest supported Slicer's parameter node
wrapper can connect to that parameter's declared type; otherwise `connectGui()` in `setup()` raises "Unable to
create GUI connector..." and the panel does not open.

The Slicer application cannot run here, so the accepted pairs are data, read from each release's
`Base/Python/slicer/parameterNodeWrapper/guiConnectors.py` (Slicer/Slicer): the `canRepresent` of every class
registered with `@parameterNodeGuiConnector`, in registration order (`createGuiConnector` takes the first match).
See docs/slicer-compatibility.md.
"""

from __future__ import annotations

import ast
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path

import pytest

MODULE = Path(__file__).resolve().parents[1] / "BrainTumorSeg"
MODULE_FILE = MODULE / "BrainTumorSeg.py"
UI_FILE = MODULE / "Resources" / "UI" / "BrainTumorSeg.ui"

NODE = "vtkMRMLNode"  # any vtkMRML*Node class, or a Union of them (with None): `isNodeOrUnionOfNodes`
PATHS = ("Path", "PosixPath", "WindowsPath", "PurePath", "PurePosixPath", "PureWindowsPath")


@dataclass(frozen=True)
class Connector:
    """One GUI connector: the exact widget classes (`type(widget) in ...`), the unannotated parameter types it
    takes, and the annotation its `create` requires (it raises without it)."""

    name: str
    widgets: tuple[str, ...]
    types: tuple[str, ...]
    requires: str | None = None


# Slicer/Slicer tag v5.10.0 (commit a2b6d082be04274a849884fbb1e85634a9df90fb), guiConnectors.py blob c0b71eb;
# the file is unchanged at v5.12.0..v5.12.3 and main 583e9b37 (2026-08-21). v5.10.0 is the oldest supported release.
CONNECTORS_5_10 = (
    Connector("QCheckBoxToBoolConnector", ("QCheckBox", "ctkCheckBox"), ("bool",)),
    Connector("QCheckablePushButtonToBoolConnector", ("QPushButton",), ("bool",)),
    Connector("ctkCheckablePushButtonToBoolConnector", ("ctkCheckablePushButton",), ("bool",)),
    Connector("QSliderOrSpinBoxToIntConnector", ("QSlider", "QSpinBox"), ("int",)),
    Connector("QDoubleSpinBoxCtkSliderWidgetToFloatIntConnector",
              ("QDoubleSpinBox", "ctkSliderWidget", "qMRMLSliderWidget", "ctkDoubleSlider", "ctkDoubleSpinBox",
               "qMRMLSpinBox"), ("float", "int")),
    Connector("QComboBoxToStringableConnector", ("QComboBox", "ctkComboBox"), ("int", "float", "str", "bool"),
              requires="Choice"),
    Connector("QComboBoxToEnumConnector", ("QComboBox", "ctkComboBox"), ("Enum",)),
    Connector("QLineEditToStrConnector", ("QLineEdit",), ("str",)),
    Connector("QLabelToStrConnector", ("QLabel",), ("str",)),
    Connector("QTextEditPlainTextToStrConnector", ("QTextEdit",), ("str",)),
    Connector("ctkRangeWidgetToRangeConnector", ("ctkRangeWidget", "ctkDoubleRangeSlider", "qMRMLRangeWidget"),
              ("FloatRange",)),
    Connector("ctkPathLineEditToPathConnector", ("ctkPathLineEdit",), PATHS),
    Connector("ctkDirectoryButtonToPathConnector", ("ctkDirectoryButton",), PATHS),
    Connector("qMRMLNodeComboBoxToNodeConnector", ("qMRMLNodeComboBox",), (NODE,)),
    Connector("ctkColorPickerButtonToQColorConnector", ("ctkColorPickerButton",), ("QColor",)),
)

# Slicer/Slicer tag v5.6.2 (commit f10cd8c229b50e4d96e55743385f17482214433a), guiConnectors.py blob 2adc05f: the
# release the README used to claim. Its float connector takes no ctkDoubleSpinBox (added by deaeeae8, first in
# v5.8.0). Kept to show that the check tells the releases apart.
CONNECTORS_5_6 = (
    Connector("QCheckBoxToBoolConnector", ("QCheckBox",), ("bool",)),
    Connector("QCheckablePushButtonToBoolConnector", ("QPushButton",), ("bool",)),
    Connector("QSliderOrSpinBoxToIntConnector", ("QSlider", "QSpinBox"), ("int",)),
    Connector("QDoubleSpinBoxCtkSliderWidgetToFloatConnector",
              ("QDoubleSpinBox", "ctkSliderWidget", "qMRMLSliderWidget"), ("float",)),
    Connector("QComboBoxToStringableConnector", ("QComboBox",), ("int", "float", "str", "bool"), requires="Choice"),
    Connector("QComboBoxToEnumConnector", ("QComboBox",), ("Enum",)),
    Connector("QLineEditToStrConnector", ("QLineEdit",), ("str",)),
    Connector("QTextEditPlainTextToStrConnector", ("QTextEdit",), ("str",)),
    Connector("ctkRangeWidgetToRangeConnector", ("ctkRangeWidget",), ("FloatRange",)),
    Connector("ctkPathLineEditToPathConnector", ("ctkPathLineEdit",), PATHS),
    Connector("ctkDirectoryButtonToPathConnector", ("ctkDirectoryButton",), PATHS),
    Connector("qMRMLNodeComboBoxToNodeConnector", ("qMRMLNodeComboBox",), (NODE,)),
)

OLDEST_SUPPORTED = CONNECTORS_5_10


@dataclass(frozen=True)
class Parameter:
    """A parameter as declared: its unannotated type and the names of its `Annotated[...]` extras."""

    type: str
    annotations: tuple[str, ...] = ()


def _name(node: ast.expr) -> str:
    """The last name of `x`, `a.b.x` or a call `x(...)`."""
    if isinstance(node, ast.Call):
        return _name(node.func)
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Name):
        return node.id
    raise ValueError(f"unexpected annotation element {ast.dump(node)}")


def _type_name(name: str) -> str:
    return NODE if name.startswith("vtkMRML") and name.endswith("Node") else name


def declared(annotation: ast.expr) -> Parameter:
    """Read a parameter annotation: `T`, `mod.T`, `Annotated[T, X(...), ...]`, `Optional[Node]`, `Node | None`,
    `Union[...]`, or any of these as a string. Only types and the names of extras matter, not their arguments."""
    if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
        return declared(ast.parse(annotation.value, mode="eval").body)
    if isinstance(annotation, ast.BinOp) and isinstance(annotation.op, ast.BitOr):
        return _union([annotation.left, annotation.right])
    if isinstance(annotation, ast.Subscript):
        outer = _name(annotation.value)
        args = annotation.slice.elts if isinstance(annotation.slice, ast.Tuple) else [annotation.slice]
        if outer == "Annotated":
            inner = declared(args[0])
            return Parameter(inner.type, inner.annotations + tuple(_name(a) for a in args[1:]))
        if outer == "Optional":
            return _union([args[0], ast.Constant(None)])
        if outer == "Union":
            return _union(args)
        raise ValueError(f"unexpected generic annotation {outer}[...]")
    return Parameter(_type_name(_name(annotation)))


def _union(members: list[ast.expr]) -> Parameter:
    flat = []
    for member in members:
        if isinstance(member, ast.BinOp) and isinstance(member.op, ast.BitOr):
            flat += [member.left, member.right]
        else:
            flat.append(member)
    types = {"None" if isinstance(m, ast.Constant) and m.value is None else declared(m).type for m in flat}
    if types - {"None"} == {NODE}:
        return Parameter(NODE)
    return Parameter("Union[" + ", ".join(sorted(types)) + "]")


def parameters(source: str) -> dict[str, Parameter]:
    """The annotated fields of the class decorated with `@parameterNodeWrapper`."""
    tree = ast.parse(source)
    wrappers = [node for node in ast.walk(tree) if isinstance(node, ast.ClassDef)
                and any(_name(d) == "parameterNodeWrapper" for d in node.decorator_list)]
    assert len(wrappers) == 1, f"expected one @parameterNodeWrapper class, found {len(wrappers)}"
    return {item.target.id: declared(item.annotation) for item in wrappers[0].body
            if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)}


def bound_widgets(ui_text: str) -> dict[str, tuple[str, str]]:
    """widget name -> (its .ui class, the SlicerParameterName it carries)."""
    bound = {}
    for widget in ElementTree.fromstring(ui_text).iter("widget"):
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                bound[widget.get("name")] = (widget.get("class"), prop.find("string").text)
    return bound


def connection_problems(ui_text: str, source: str, connectors: tuple[Connector, ...]) -> list[str]:
    """One line per bound widget that `createGuiConnector` of that wrapper could not connect."""
    fields = parameters(source)
    problems = []
    for widget, (widget_class, name) in sorted(bound_widgets(ui_text).items()):
        if name not in fields:
            problems.append(f"{widget} ({widget_class}) names '{name}', which the parameter node does not declare")
            continue
        parameter = fields[name]
        match = next((c for c in connectors if widget_class in c.widgets and parameter.type in c.types), None)
        if match is None:
            problems.append(f"{widget}: no connector takes a {widget_class} for '{name}' ({parameter.type})")
        elif match.requires and match.requires not in parameter.annotations:
            problems.append(f"{widget}: {match.name} needs '{name}' annotated with {match.requires}")
    return problems


UI_TEXT = UI_FILE.read_text()
SOURCE = MODULE_FILE.read_text()


def test_every_bound_widget_connects_on_the_oldest_supported_slicer():
    assert len(bound_widgets(UI_TEXT)) >= 13
    assert connection_problems(UI_TEXT, SOURCE, OLDEST_SUPPORTED) == []


def test_the_panel_also_connects_on_slicer_5_6():
    """QDoubleSpinBox rather than ctkDoubleSpinBox: the .ui needs nothing 5.8 added to the wrapper."""
    assert connection_problems(UI_TEXT, SOURCE, CONNECTORS_5_6) == []


def test_a_ctk_double_spin_box_fails_where_the_wrapper_lacks_it():
    old = '<widget class="QDoubleSpinBox" name="minimumClusterSpinBox">'
    assert UI_TEXT.count(old) == 1
    with_ctk = UI_TEXT.replace(old, '<widget class="ctkDoubleSpinBox" name="minimumClusterSpinBox">')
    assert connection_problems(with_ctk, SOURCE, CONNECTORS_5_6) == [
        "minimumClusterSpinBox: no connector takes a ctkDoubleSpinBox for 'minimumClusterMl' (float)"]
    assert connection_problems(with_ctk, SOURCE, CONNECTORS_5_10) == []


def test_a_combo_box_needs_a_choice_annotation():
    without_choice = SOURCE.replace('skullStrip: Annotated[str, Choice(', 'skullStrip: Annotated[str, Unrelated(')
    assert without_choice != SOURCE
    assert connection_problems(UI_TEXT, without_choice, OLDEST_SUPPORTED) == [
        "skullStripComboBox: QComboBoxToStringableConnector needs 'skullStrip' annotated with Choice"]


@pytest.mark.parametrize("annotation, expected", [
    ("slicer.vtkMRMLScalarVolumeNode", Parameter(NODE)),
    ("Optional[slicer.vtkMRMLSegmentationNode]", Parameter(NODE)),
    ("slicer.vtkMRMLScalarVolumeNode | slicer.vtkMRMLLabelMapVolumeNode | None", Parameter(NODE)),
    ("typing.Annotated[float, WithinRange(*settings.MIN_CLUSTER_RANGE), Decimals(2)]",
     Parameter("float", ("WithinRange", "Decimals"))),
    ("Annotated[str, Choice(list(settings.DEVICES))]", Parameter("str", ("Choice",))),
    ("'bool'", Parameter("bool")),
    ("int | str", Parameter("Union[int, str]")),
])
def test_annotations_are_read_from_their_types_not_their_values(annotation, expected):
    source = f"@parameterNodeWrapper\nclass P:\n    x: {annotation} = settings.DEFAULTS.x\n"
    assert parameters(source) == {"x": expected}
