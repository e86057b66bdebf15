"""Every Slicer, Qt, CTK, VTK, SampleData and PyTorchUtils name BrainTumorSeg.py uses, its keyword arguments, the
members it reads on its .ui widgets and the signals it connects must be in the lists below, each checked by reading
the source of the supported Slicer releases; a new use fails here until it is checked and added.

Checked at Slicer/Slicer v5.10.0 (a2b6d082be04274a849884fbb1e85634a9df90fb) and v5.12.3
(9034c71a8fce68ab312458b3d7d16f610562263d), and fepegar/SlicerPyTorch e1c85cc0 (2024-04-22, its latest commit).
Qt members are Qt 5 API, not read in any source here (both releases' official builds use Qt 5.15). Where each one
is defined: docs/slicer-compatibility.md.
"""

from __future__ import annotations

import ast
import xml.etree.ElementTree as ElementTree
from pathlib import Path

MODULE = Path(__file__).resolve().parents[1] / "BrainTumorSeg"
MODULE_FILE = MODULE / "BrainTumorSeg.py"
UI_FILE = MODULE / "Resources" / "UI" / "BrainTumorSeg.ui"
ROOTS = {"slicer", "qt", "ctk", "vtk", "SampleData", "PyTorchUtils"}

# Dotted name (a call inside the chain written "()") -> the keyword arguments checked for it.
CHECKED_NAMES: dict[str, frozenset[str]] = {name: frozenset(keywords) for name, keywords in {
    # Base/Python/slicer/util.py
    "slicer.util.arrayFromSegmentBinaryLabelmap": (),
    "slicer.util.childWidgetVariables": (),
    "slicer.util.confirmOkCancelDisplay": (),
    "slicer.util.confirmYesNoDisplay": (),
    "slicer.util.errorDisplay": (),
    "slicer.util.getNodesByClass": (),
    "slicer.util.loadUI": (),
    "slicer.util.loadVolume": (),
    "slicer.util.pip_install": (),  # a str or a list (both accepted at both tags)
    "slicer.util.setSliceViewerLayers": ("foreground", "foregroundOpacity"),
    "slicer.util.tryWithErrorDisplay": ("waitCursor",),
    # Base/Python/slicer/i18n.py, parameterNodeWrapper/{validators,wrapper}.py, ScriptedLoadableModule.py
    "slicer.i18n.tr": (),
    "slicer.i18n.tr().format": ("name",),  # tr returns the translated str
    "slicer.parameterNodeWrapper.Choice": (),
    "slicer.parameterNodeWrapper.WithinRange": (),
    "slicer.parameterNodeWrapper.parameterNodeWrapper": (),
    "slicer.ScriptedLoadableModule.ScriptedLoadableModule.__init__": (),
    "slicer.ScriptedLoadableModule.ScriptedLoadableModuleLogic.__init__": (),
    "slicer.ScriptedLoadableModule.ScriptedLoadableModuleTest": (),
    "slicer.ScriptedLoadableModule.ScriptedLoadableModuleWidget.__init__": (),
    "slicer.ScriptedLoadableModule.ScriptedLoadableModuleWidget.setup": (),
    "slicer.util.VTKObservationMixin.__init__": (),
    # Base/QTGUI/qSlicerApplication.h (signal startupCompleted()); processEvents is QCoreApplication's
    "slicer.app.connect": (),
    "slicer.app.processEvents": (),
    # Libs/MRML/Core/vtkMRMLScene.h: Clear(int removeSingletons = 0), GetNodeByID, the scene events
    "slicer.mrmlScene.Clear": (),
    "slicer.mrmlScene.EndCloseEvent": (),
    "slicer.mrmlScene.GetNodeByID": (),
    "slicer.mrmlScene.NodeAddedEvent": (),
    "slicer.mrmlScene.StartCloseEvent": (),
    "slicer.vtkMRMLScalarVolumeNode": (),
    "slicer.vtkMRMLSegmentationNode": (),
    # Modules/Loadable/Terminologies (MODULE_NAME Terminologies): std::string LoadTerminologyFromFile(std::string)
    "slicer.modules.terminologies.logic": (),
    "slicer.modules.terminologies.logic().LoadTerminologyFromFile": (),
    # Modules/Scripted/SampleData/SampleData.py (keywords: see test_slicer_sample_data.py)
    "SampleData.SampleDataLogic.registerCustomSampleDataSource": (),
    # fepegar/SlicerPyTorch PyTorchUtils/PyTorchUtils.py: installTorch(askConfirmation=False,
    # forceComputationBackend=None, torchVersionRequirement=None, torchvisionVersionRequirement=None)
    "PyTorchUtils.PyTorchUtilsLogic": (),
    "PyTorchUtils.PyTorchUtilsLogic().installTorch": ("askConfirmation", "torchVersionRequirement"),
    # Qt 5.15 QFileDialog: static getSaveFileName(parent, caption, dir, filter) (PythonQt returns the path, a str)
    "qt.QFileDialog.getSaveFileName": (),
    # Qt 5.15 QTimer; VTK 9 (Slicer's VTK 9.5 / 9.6 forks) vtkCommand, vtkmodules.util.misc.calldata_type
    "qt.QTimer": (),
    "qt.QTimer.singleShot": (),
    "vtk.VTK_OBJECT": (),
    "vtk.calldata_type": (),
    "vtk.vtkCommand.ModifiedEvent": (),
}.items()}

# Members read or called on `self.ui.<widget>`, by the widget's .ui class.
CHECKED_WIDGET_MEMBERS = {
    "QCheckBox": {"connect"},
    "QComboBox": {"addItem", "clear", "connect", "findText", "setCurrentIndex"},
    "QLabel": {"text"},
    "QProgressBar": {"value", "visible"},
    "QPushButton": {"connect", "enabled", "text", "toolTip"},
    "ctkCollapsibleButton": {"enabled"},  # a QWidget property
    "qMRMLNodeComboBox": {"enabled", "connect"},
    "qMRMLTableView": {"setMRMLTableNode", "visible"},  # Libs/MRML/Widgets/qMRMLTableView.h
}

# Signals connected by name: (the object, the signature); the .ui widgets by class.
CHECKED_SIGNALS = {
    ("slicer.app", "startupCompleted()"),  # qSlicerApplication.h
    ("qt.QTimer", "timeout()"),
    ("QComboBox", "currentTextChanged(QString)"),
    ("QPushButton", "clicked(bool)"),
    ("QCheckBox", "toggled(bool)"),
    ("qMRMLNodeComboBox", "currentNodeChanged(vtkMRMLNode*)"),  # Libs/MRML/Widgets/qMRMLNodeComboBox.h
}

# `self.parent.<x>` in the module class: Q_PROPERTYs of qSlicerScriptedLoadableModule (Base/QTGUI); in the
# widget: qSlicerAbstractModuleWidget's isEntered.
CHECKED_PARENT_PROPERTIES = {"title", "categories", "dependencies", "contributors", "helpText",
                             "acknowledgementText", "isEntered"}

TREE = ast.parse(MODULE_FILE.read_text())
WIDGET_CLASSES = {w.get("name"): w.get("class") for w in ElementTree.parse(UI_FILE).iter("widget")}


def imported_names(tree: ast.Module) -> dict[str, str]:
    """Local name -> dotted name, for names imported from the roots (`from slicer.i18n import tr as _`)."""
    names = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module.split(".")[0] in ROOTS:
            names.update({alias.asname or alias.name: f"{node.module}.{alias.name}" for alias in node.names})
    return names


def dotted(node: ast.expr, aliases: dict[str, str]) -> str | None:
    parts = []
    while True:
        if isinstance(node, ast.Attribute):
            parts.append("." + node.attr)
            node = node.value
        elif isinstance(node, ast.Call):
            parts.append("()")
            node = node.func
        elif isinstance(node, ast.Name):
            root = aliases.get(node.id, node.id)
            return root + "".join(reversed(parts)) if root.split(".")[0] in ROOTS else None
        else:
            return None


def used_names(tree: ast.Module) -> dict[str, set[str]]:
    """The dotted names rooted at a Slicer-side module that nothing longer extends, and every name called, with
    the keywords passed to it."""
    aliases = imported_names(tree)
    names, called = set(), {}
    for node in ast.walk(tree):
        if isinstance(node, (ast.Attribute, ast.Name)) and dotted(node, aliases):
            names.add(dotted(node, aliases))
        if isinstance(node, ast.Call) and dotted(node.func, aliases):
            called.setdefault(dotted(node.func, aliases), set()).update(k.arg for k in node.keywords if k.arg)
    longest = {n for n in names if not any(o != n and o.startswith(n) and o[len(n)] in ".(" for o in names)}
    return {name: called.get(name, set()) for name in longest | set(called)}


def test_every_slicer_side_name_the_module_uses_is_checked():
    used = used_names(TREE)
    assert len(used) > 30
    unchecked = sorted(set(used) - set(CHECKED_NAMES))
    assert not unchecked, f"check these against the supported Slicer releases' source, then list them: {unchecked}"
    keywords = {name: sorted(k - CHECKED_NAMES[name]) for name, k in used.items() if k - CHECKED_NAMES[name]}
    assert not keywords, f"unchecked keyword arguments: {keywords}"


def test_the_list_holds_nothing_the_module_no_longer_uses():
    assert set(CHECKED_NAMES) - set(used_names(TREE)) == set()


def ui_member_uses(tree: ast.Module) -> dict[str, set[str]]:
    """.ui class -> members used as `self.ui.<widget>.<member>` or `getattr(self.ui, ...).<member>`."""
    selectors = next(ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign)
                     and any(getattr(t, "id", "") == "SELECTORS" for t in node.targets))
    uses: dict[str, set[str]] = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        owner = node.value
        if isinstance(owner, ast.Attribute) and ast.unparse(owner.value) == "self.ui":
            classes = {WIDGET_CLASSES[owner.attr]}
        elif isinstance(owner, ast.Call) and ast.unparse(owner.func) == "getattr" and \
                ast.unparse(owner.args[0]) == "self.ui":
            classes = {WIDGET_CLASSES[name] for name in selectors.values()}
        else:
            continue
        for widget_class in classes:
            uses.setdefault(widget_class, set()).add(node.attr)
    return uses


def test_every_member_used_on_a_ui_widget_is_checked_for_its_class():
    uses = ui_member_uses(TREE)
    assert uses.keys() <= CHECKED_WIDGET_MEMBERS.keys(), sorted(uses.keys() - CHECKED_WIDGET_MEMBERS.keys())
    unchecked = {cls: sorted(members - CHECKED_WIDGET_MEMBERS[cls]) for cls, members in uses.items()
                 if members - CHECKED_WIDGET_MEMBERS[cls]}
    assert not unchecked, unchecked


def test_every_connected_signal_is_checked():
    connected = set()
    for node in ast.walk(TREE):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "connect" \
                and node.args and isinstance(node.args[0], ast.Constant):
            owner = ast.unparse(node.func.value)
            if owner.startswith("self.ui."):
                owner = WIDGET_CLASSES[owner.split(".")[2]]
            elif owner.startswith("getattr(self.ui"):
                owner = "qMRMLNodeComboBox"  # the SELECTORS; test_every_member... checks their classes
            elif owner == "self._timer":
                owner = "qt.QTimer"
            connected.add((owner, node.args[0].value))
    assert len(connected) >= 6
    assert connected <= CHECKED_SIGNALS, sorted(connected - CHECKED_SIGNALS)


def test_the_module_and_widget_use_only_checked_parent_properties():
    used = {node.attr for node in ast.walk(TREE) if isinstance(node, ast.Attribute)
            and ast.unparse(node.value) == "self.parent"}
    assert "title" in used and used <= CHECKED_PARENT_PROPERTIES, sorted(used - CHECKED_PARENT_PROPERTIES)


def test_the_checker_sees_a_new_slicer_call():
    tree = ast.parse("import slicer\nslicer.util.notARealFunction(x, flag=True)\n")
    assert used_names(tree) == {"slicer.util.notARealFunction": {"flag"}}
