"""Static checks of the Slicer module: UI names, parameter names, CMake lists, and the module file's imports."""

from __future__ import annotations

import ast
import glob
import importlib
import py_compile
import re
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

from braintumorseg.resources import sample_case

MODULE = Path(__file__).resolve().parents[1] / "BrainTumorSeg"
MODULE_FILE = MODULE / "BrainTumorSeg.py"
UI_FILE = MODULE / "Resources" / "UI" / "BrainTumorSeg.ui"
# Modules only the Slicer application provides.
APPLICATION_ONLY = {"qt", "ctk", "slicer.i18n", "slicer.parameterNodeWrapper", "slicer.ScriptedLoadableModule",
                    "SampleData", "PyTorchUtils"}


def ui_widgets() -> dict[str, ElementTree.Element]:
    return {w.get("name"): w for w in ElementTree.parse(UI_FILE).iter("widget")}


def test_every_ui_object_the_module_uses_exists():
    source = MODULE_FILE.read_text()
    used = set(re.findall(r"self\.ui\.(\w+)", source))
    tree = ast.parse(source)
    selectors = next(node.value for node in ast.walk(tree) if isinstance(node, ast.Assign)
                     and any(getattr(t, "id", "") == "SELECTORS" for t in node.targets))
    used |= set(ast.literal_eval(selectors).values())
    assert len(used) > 10
    assert not used - set(ui_widgets()), f"missing in {UI_FILE.name}: {sorted(used - set(ui_widgets()))}"


def parameter_fields() -> set[str]:
    tree = ast.parse(MODULE_FILE.read_text())
    wrapper = next(node for node in ast.walk(tree) if isinstance(node, ast.ClassDef)
                   and node.name == "BrainTumorSegParameterNode")
    return {item.target.id for item in wrapper.body if isinstance(item, ast.AnnAssign)}


def test_ui_parameter_names_match_the_parameter_node():
    named = {}
    for name, widget in ui_widgets().items():
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                named[name] = prop.find("string").text
    fields = parameter_fields()
    assert set(named.values()) <= fields, set(named.values()) - fields
    # Every parameter has a widget, except the model, whose list is filled at run time.
    assert fields - set(named.values()) == {"model"}
    assert all(prop.get("stdset") == "0" for widget in ui_widgets().values()
               for prop in widget.findall("property") if prop.get("name") == "SlicerParameterName")


def test_bound_combo_boxes_list_the_engines_choices():
    """A combo box shows the values its parameter's Choice allows, in the engine's order (settings.py, RANO)."""
    from braintumorseg.rano_response import CLINICAL_STATUS, CONFIRMATION, STEROIDS
    from braintumorseg.rano_results import CRITERIA
    from braintumorseg.settings import choices
    expected = {"registerMode": choices("register"), "skullStrip": choices("skull_strip"),
                "device": choices("device"), "ranoCriteria": tuple(CRITERIA), "steroids": STEROIDS,
                "clinicalStatus": CLINICAL_STATUS, "confirmation": CONFIRMATION}
    found = {}
    for widget in ui_widgets().values():
        parameter = next((p.find("string").text for p in widget.findall("property")
                          if p.get("name") == "SlicerParameterName"), None)
        if widget.get("class") == "QComboBox" and parameter:
            found[parameter] = tuple(item.find("property/string").text for item in widget.findall("item"))
    assert set(found) >= set(expected) - {"device"}
    for parameter, items in found.items():
        assert items == tuple(expected[parameter]), parameter


def test_the_weeks_spin_box_spans_the_engines_range():
    """Its minimum is the engine's "not entered" (shown as such), its maximum the engine's limit."""
    from braintumorseg.rano_response import MAX_WEEKS, NOT_ENTERED, NOT_ENTERED_WEEKS
    widget = ui_widgets()["weeksSpinBox"]
    values = {p.get("name"): p[0].text for p in widget.findall("property")}
    assert float(values["minimum"]) == float(values["value"]) == NOT_ENTERED_WEEKS
    assert float(values["maximum"]) == MAX_WEEKS and values["specialValueText"] == NOT_ENTERED


def cmake_list(text: str, variable: str) -> list[str]:
    body = re.search(rf"set\({variable}\s+(.*?)\)", text, re.S).group(1)
    return body.split()


def expand(entries: list[str], text: str) -> set[str]:
    """Resolve ${MODULE_NAME} and the file(GLOB ...) variables the way CMake would."""
    files = set()
    for entry in entries:
        entry = entry.replace("${MODULE_NAME}", "BrainTumorSeg")
        glob_variable = re.fullmatch(r"\$\{(\w+)\}", entry)
        if glob_variable:
            match = re.search(rf"file\((GLOB|GLOB_RECURSE) {glob_variable.group(1)} RELATIVE \S+ (\S+)\)", text)
            assert match, f"{entry} is neither a file nor a file(GLOB) variable"
            pattern = match.group(2).replace("*", "**/*" if match.group(1) == "GLOB_RECURSE" else "*", 1)
            files |= {str(Path(p).relative_to(MODULE)) for p in glob.glob(str(MODULE / pattern), recursive=True)
                      if Path(p).is_file()}
        else:
            files.add(entry)
    return files


def test_cmake_lists_every_script_and_resource_and_nothing_else():
    text = (MODULE / "CMakeLists.txt").read_text()
    assert "WITH_GENERIC_TESTS" in text and "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in text
    scripts = expand(cmake_list(text, "MODULE_PYTHON_SCRIPTS"), text)
    resources = expand(cmake_list(text, "MODULE_PYTHON_RESOURCES"), text)
    existing_scripts = {str(p.relative_to(MODULE)) for p in MODULE.rglob("*.py") if "__pycache__" not in p.parts}
    existing_resources = {str(p.relative_to(MODULE)) for p in (MODULE / "Resources").rglob("*")
                          if p.is_file() and "__pycache__" not in p.parts}
    assert scripts == existing_scripts, (sorted(scripts - existing_scripts), sorted(existing_scripts - scripts))
    assert resources == existing_resources, (sorted(resources - existing_resources),
                                             sorted(existing_resources - resources))
    root = (MODULE.parent / "CMakeLists.txt").read_text()
    for key in ("EXTENSION_HOMEPAGE", "EXTENSION_CATEGORY \"Segmentation\"", "EXTENSION_CONTRIBUTORS",
                "EXTENSION_DESCRIPTION", "EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS", "EXTENSION_DEPENDS",
                "add_subdirectory(BrainTumorSeg)", "Slicer_EXTENSION_CPACK"):
        assert key in root


def test_module_file_compiles_and_its_non_qt_imports_resolve(tmp_path):
    pytest.importorskip("slicer")
    py_compile.compile(str(MODULE_FILE), cfile=str(tmp_path / "module.pyc"), doraise=True)
    tree = ast.parse(MODULE_FILE.read_text())
    checked = 0
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module not in APPLICATION_ONLY:
            module = importlib.import_module(node.module)
            for alias in node.names:
                if not hasattr(module, alias.name):  # a submodule, e.g. `from BrainTumorSegLib import runner`
                    importlib.import_module(f"{node.module}.{alias.name}")
                checked += 1
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name not in APPLICATION_ONLY:
                    importlib.import_module(alias.name)
                    checked += 1
    assert checked >= 15


def test_the_module_file_opens_without_pytorch():
    """The panel must open, and its status line read the model card, before the first Segment installs
    PyTorch: its own imports (those outside the Slicer application) load neither torch nor MONAI."""
    tree = ast.parse(MODULE_FILE.read_text())
    modules = sorted({node.module for node in tree.body if isinstance(node, ast.ImportFrom)} |
                     {alias.name for node in tree.body if isinstance(node, ast.Import) for alias in node.names})
    ours = [m for m in modules if m.split(".")[0] in ("braintumorseg", "BrainTumorSegLib")]
    assert "BrainTumorSegLib.panel_state" in ours
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import importlib\n"
            f"for m in {ours!r}: importlib.import_module(m)\n"
            "print(sorted(m for m in ('torch', 'monai', 'SimpleITK') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code, str(MODULE)], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout


def test_sample_data_registration_names_the_bundled_files():
    """Registration (through BrainTumorSegLib.sample_data) and the self-test take the files from the engine's
    `sample_case()`, which must all exist."""
    tree = ast.parse(MODULE_FILE.read_text())

    def callers(name):
        return {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)
                and any(isinstance(call, ast.Call) and getattr(call.func, "id", "") == name
                        for call in ast.walk(node))}

    assert "test_SampleCaseSegmentation" in callers("sample_case")
    assert "registerSampleData" in callers("sample_data_source")
    files = sample_case()
    assert set(files) == {"t1", "t1c", "t2", "flair", "label"} and all(p.is_file() for p in files.values())
