"""BrainTumorSeg: segment brain tumours (necrotic core, edema, enhancing tumour) from multimodal MRI in 3D Slicer."""

import logging
import shutil
import sys
from pathlib import Path
from typing import Annotated

import qt
import slicer
import vtk
from slicer.i18n import tr as _
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin

from BrainTumorSegLib import dependencies
from BrainTumorSegLib.autofill import autofill
from BrainTumorSegLib.display import clear_probability_overlays, is_probability_map, show_in_3d
from BrainTumorSegLib.logic import SegmentationFailed, SegmentationLogic, SegmentationResult, input_problems
from BrainTumorSegLib.panel_state import (button_state, model_argument, progress_percent, sequence_notes, stage_summary,
                                         status_text)
from BrainTumorSegLib.rano_markups import lines_needing_confirmation, observe_lines
from BrainTumorSegLib.response import (compare_segmentations, default_pair, findings_from_panel,
                                       problems as comparison_problems, save_report)
from BrainTumorSegLib.runner import InProcessRunner, ProcessRunner, RunState
from BrainTumorSegLib.sample_data import sample_data_source
from BrainTumorSegLib.segments import needs_confirmation
from braintumorseg.errors import InputError
from braintumorseg.labels import VOLUME_KEYS
from braintumorseg.modalities import MODALITIES
from braintumorseg.rano_response import (CLINICAL_STATUS, CONFIRMATION, MAX_WEEKS, NOT_ENTERED, NOT_ENTERED_WEEKS,
                                         STEROIDS)
from braintumorseg.rano_results import CRITERIA
from braintumorseg.resources import DEFAULT_MODEL, model_cards, sample_case
from braintumorseg.settings import DEFAULTS, RunSettings, choices, value_range

MODULE_DIR = Path(__file__).resolve().parent
TERMINOLOGY_FILE = MODULE_DIR / "Resources" / "Terminology" / "SegmentationCategoryTypeModifier-BrainTumorSeg.term.json"
SELECTORS = {"t1": "t1Selector", "t1c": "t1cSelector", "t2": "t2Selector", "flair": "flairSelector"}
POLL_MS = 200


#
# BrainTumorSeg
#

class BrainTumorSeg(ScriptedLoadableModule):
    """Module description shown in Slicer's module list and help panel."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("Brain Tumor Segmentation")
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = []
        self.parent.contributors = ["BrainTumorSeg contributors"]
        self.parent.helpText = _("""
Segments a brain tumour into <b>necrotic tumor core</b>, <b>peritumoral edema</b> and <b>enhancing tumor</b>
from any of T1, T1Gd, T2 and FLAIR MRI (one is enough, all four is best). The volumes are aligned in
physical space, bias-corrected and normalized before a neural network trained on BraTS data segments them.
The result is an ordinary, editable segmentation with a table of volumes in mL.
<br><br>For research use only: not for clinical decisions.
See the <a href="https://github.com/braintumorseg/BrainTumorSeg#in-3d-slicer">documentation</a>.
""")
        self.parent.acknowledgementText = _("""
The default model is trained on the BraTS challenge data (Menze et al., IEEE TMI 2015; Bakas et al., Sci Data
2017; Baid et al., arXiv:2107.02314). The sample case is TCGA data from The Cancer Imaging Archive (CC BY 3.0).
Built with 3D Slicer, MONAI, PyTorch and SimpleITK.
""")
        slicer.app.connect("startupCompleted()", registerSampleData)
        slicer.app.connect("startupCompleted()", loadTerminology)


def registerSampleData():
    """Offer the bundled sample case in the Sample Data module, from local files (no download)."""
    import SampleData

    SampleData.SampleDataLogic.registerCustomSampleDataSource(
        **sample_data_source(MODULE_DIR / "Resources" / "Icons" / "BrainTumorSegSample.png"))


def loadTerminology():
    """Make the segments' SNOMED CT codes known to the Terminologies module."""
    if not slicer.modules.terminologies.logic().LoadTerminologyFromFile(str(TERMINOLOGY_FILE)):
        logging.error(f"BrainTumorSeg: could not load {TERMINOLOGY_FILE}; reinstall the extension.")


#
# BrainTumorSegParameterNode
#

@parameterNodeWrapper
class BrainTumorSegParameterNode:
    """The panel's state; saved with the scene. The run settings' defaults and choices come from
    `braintumorseg.settings` (each named there by its parameter name)."""

    t1Volume: slicer.vtkMRMLScalarVolumeNode
    t1cVolume: slicer.vtkMRMLScalarVolumeNode
    t2Volume: slicer.vtkMRMLScalarVolumeNode
    flairVolume: slicer.vtkMRMLScalarVolumeNode
    outputSegmentation: slicer.vtkMRMLSegmentationNode
    biasCorrection: bool = DEFAULTS.bias_correction
    registerMode: Annotated[str, Choice(choices("register"))] = DEFAULTS.register
    skullStrip: Annotated[str, Choice(choices("skull_strip"))] = DEFAULTS.skull_strip
    testTimeAugmentation: bool = DEFAULTS.tta
    device: Annotated[str, Choice(choices("device"))] = DEFAULTS.device
    model: str = DEFAULT_MODEL
    minimumClusterMl: Annotated[float, WithinRange(*value_range("min_cluster_ml"))] = DEFAULTS.min_cluster_ml
    probabilityMap: bool = False
    show3D: bool = False
    baselineSegmentation: slicer.vtkMRMLSegmentationNode
    followUpSegmentation: slicer.vtkMRMLSegmentationNode
    ranoCriteria: Annotated[str, Choice(tuple(CRITERIA))] = "2.0"
    steroids: Annotated[str, Choice(STEROIDS)] = NOT_ENTERED
    clinicalStatus: Annotated[str, Choice(CLINICAL_STATUS)] = NOT_ENTERED
    weeksSinceRadiotherapy: Annotated[float, WithinRange(NOT_ENTERED_WEEKS, MAX_WEEKS)] = NOT_ENTERED_WEEKS
    confirmation: Annotated[str, Choice(CONFIRMATION)] = NOT_ENTERED


#
# BrainTumorSegWidget
#

class BrainTumorSegWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The panel: a thin layer that turns clicks into logic calls and logic results into what is shown."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._job = None
        self._lastSegmentation = None
        self._lineObservers = []  # (line markup, observer tag): the RANO lines whose moves update the table
        self._comparison = None  # the last comparison of two studies (response.StudyComparison)
        self._cancelling = False
        self._userCleared = set()
        self._outcome, self._outcomeInputs = "", None  # the last run's message, and the inputs it was for
        self._autofilling = False
        self._timer = qt.QTimer()
        self._timer.setInterval(POLL_MS)
        self._timer.connect("timeout()", self.onPoll)

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/BrainTumorSeg.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = BrainTumorSegLogic()

        self.ui.modelComboBox.clear()
        for name in model_cards():
            self.ui.modelComboBox.addItem(name)
        self.ui.modelComboBox.connect("currentTextChanged(QString)", self.onModelChanged)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.NodeAddedEvent, self.onNodeAdded)
        for modality, selector in SELECTORS.items():
            getattr(self.ui, selector).connect("currentNodeChanged(vtkMRMLNode*)",
                                               lambda node, m=modality: self.onInputChanged(m, node))
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.show3DCheckBox.connect("toggled(bool)", self.onShow3D)
        self.ui.compareButton.connect("clicked(bool)", self.onCompare)
        self.ui.saveReportButton.connect("clicked(bool)", self.onSaveReport)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        if self._job is not None:
            self.logic.cancel(self._job)
        self._timer.stop()
        self.removeLineObservers()
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updatePanel)

    def onSceneStartClose(self, caller, event) -> None:
        if self._job is not None:
            self.onCancel()
        self.clearComparison()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        self.autofillInputs()
        self.fillStudies()

    def setParameterNode(self, inputParameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updatePanel)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updatePanel)
            index = self.ui.modelComboBox.findText(self._parameterNode.model)
            if index >= 0:
                self.ui.modelComboBox.setCurrentIndex(index)
        self.updatePanel()

    # -- inputs

    def inputs(self) -> dict:
        if not self._parameterNode:
            return {}
        return {m: getattr(self._parameterNode, f"{m}Volume") for m in MODALITIES}

    @vtk.calldata_type(vtk.VTK_OBJECT)
    def onNodeAdded(self, caller, event, node) -> None:
        if isinstance(node, slicer.vtkMRMLScalarVolumeNode):
            # Names are set after the node is added; look once loading has finished.
            qt.QTimer.singleShot(0, self.autofillInputs)

    def autofillInputs(self) -> None:
        if not self._parameterNode or self._job is not None:
            return
        volumes = [(node.GetID(), node.GetName())
                   for node in slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode")
                   if not node.IsA("vtkMRMLLabelMapVolumeNode") and not is_probability_map(node)]
        current = {m: (node.GetID() if node else None) for m, node in self.inputs().items()}
        chosen = autofill(current, volumes, self._userCleared)
        self._autofilling = True
        try:
            for modality, nodeId in chosen.items():
                if nodeId and nodeId != current[modality]:
                    setattr(self._parameterNode, f"{modality}Volume", slicer.mrmlScene.GetNodeByID(nodeId))
        finally:
            self._autofilling = False

    def onInputChanged(self, modality, node) -> None:
        if self._autofilling:
            return
        # A selector the user empties stays empty; one the user fills is theirs anyway.
        if node is None:
            self._userCleared.add(modality)
        else:
            self._userCleared.discard(modality)

    def onModelChanged(self, name) -> None:
        if self._parameterNode and name:
            self._parameterNode.model = name

    # -- panel state

    def updatePanel(self, caller=None, event=None) -> None:
        running = self._job is not None
        problems = input_problems(self.inputs()) if self._parameterNode else []
        state = button_state(problems, running, self._cancelling)
        self.ui.applyButton.text = state.text
        self.ui.applyButton.enabled = state.enabled
        self.ui.applyButton.toolTip = state.tooltip
        self.ui.inputsCollapsibleButton.enabled = not running
        self.ui.advancedCollapsibleButton.enabled = not running
        self.ui.outputSelector.enabled = not running
        if not running and not self.ui.progressBar.visible:
            if self._outcomeInputs != self.inputIds():
                self._outcome = ""  # the inputs changed since the last run: its outcome no longer applies
            notes = [] if problems or not self._parameterNode else sequence_notes(
                self.logic.modelPath(self._parameterNode.model), [m for m, node in self.inputs().items() if node])
            self.ui.statusLabel.text = status_text(problems, running=False, notes=notes, outcome=self._outcome)
        self.updateResponse()

    def inputIds(self) -> dict:
        return {m: node.GetID() if node else None for m, node in self.inputs().items()}

    def showOutcome(self, text: str) -> None:
        """Put a run's outcome on the status line, where it stays until the inputs change."""
        self._outcome, self._outcomeInputs = text, self.inputIds()
        self.ui.statusLabel.text = text

    # -- running

    def onApplyButton(self) -> None:
        if self._job is not None:
            self.onCancel()
            return
        with slicer.util.tryWithErrorDisplay(_("Failed to start the segmentation."), waitCursor=True):
            if not self.logic.ensureDependencies(ask=True):
                self.showOutcome(dependencies.DECLINED)
                return
            output = self._parameterNode.outputSegmentation
            confirmed = False
            if output is not None and (needs_confirmation(output) or lines_needing_confirmation(output)):
                confirmed = slicer.util.confirmYesNoDisplay(
                    _("'{name}' or its RANO lines have been edited, or it was not made by BrainTumorSeg. Replace "
                      "them with the new result?\n\nNo keeps them and writes the result to a new "
                      "segmentation.").format(name=output.GetName()))
            try:
                self._job = self.logic.start(self.inputs(), self.settings(), output, confirmed,
                                             probability_map=self._parameterNode.probabilityMap)
            except SegmentationFailed as error:
                self.showOutcome(str(error))
                slicer.util.errorDisplay(str(error))
                return
            self.ui.progressBar.value = 0
            self.ui.progressBar.visible = True
            self.ui.statusLabel.text = status_text([], running=True)
            self._timer.start()
            self.updatePanel()

    def settings(self) -> RunSettings:
        p = self._parameterNode
        return RunSettings.from_parameters(lambda name: getattr(p, name), model=model_argument(p.model, model_cards()))

    def onPoll(self) -> None:
        if self._job is None:
            self._timer.stop()
            return
        status = self.logic.poll(self._job)
        self.ui.progressBar.value = progress_percent(status.fraction)
        if not status.finished:
            self.ui.statusLabel.text = status_text([], running=True, stage=status.stage)
            return
        self._timer.stop()
        job, self._job = self._job, None
        try:
            if status.state is RunState.CANCELLED:
                self.showOutcome(_("Cancelled; nothing was changed."))
                return
            try:
                result = self.logic.finish(job)
            except SegmentationFailed as error:
                self.showOutcome(str(error))
                slicer.util.errorDisplay(str(error))
                return
            self.showResult(result)
        finally:
            self._cancelling = False
            self.ui.progressBar.visible = False
            self.updatePanel()

    def onCancel(self) -> None:
        self._cancelling = True
        self.updatePanel()
        slicer.app.processEvents()
        job, self._job = self._job, None
        self._timer.stop()
        self.logic.cancel(job)
        self._cancelling = False
        self.ui.progressBar.visible = False
        self.showOutcome(_("Cancelled; nothing was changed."))
        self.updatePanel()

    def showResult(self, result: SegmentationResult) -> None:
        # The output selector is left as the user set it: a re-run writes a new node unless they choose this one.
        self._lastSegmentation = result.segmentation
        self.removeLineObservers()
        self._lineObservers = observe_lines(slicer.mrmlScene, result.segmentation)  # a moved end updates the table
        self.ui.resultsTableView.setMRMLTableNode(result.table)
        self.ui.resultsTableView.visible = True
        self.ui.ranoTableView.setMRMLTableNode(result.rano_table)
        self.ui.ranoTableView.visible = result.rano_table is not None
        self.fillStudies()
        show_in_3d(result.segmentation, self._parameterNode.show3D)
        clear_probability_overlays(slicer.mrmlScene)
        if result.probability is not None:
            slicer.util.setSliceViewerLayers(foreground=result.probability, foregroundOpacity=0.5)
        text = stage_summary(result.stage_seconds, result.total_seconds, result.processing)
        if result.warnings:
            text += " " + " ".join(result.warnings)
        self.showOutcome(text)

    # -- response assessment: two studies

    def fillStudies(self) -> None:
        """Offer the older and the newer BrainTumorSeg segmentations while the reader has chosen neither."""
        p = self._parameterNode
        if p and p.baselineSegmentation is None and p.followUpSegmentation is None:
            baseline, followUp = default_pair(slicer.mrmlScene)
            if baseline is not None:
                p.baselineSegmentation, p.followUpSegmentation = baseline, followUp

    def findings(self):
        p = self._parameterNode
        return findings_from_panel(p.steroids, p.clinicalStatus, p.weeksSinceRadiotherapy, p.confirmation)

    def updateResponse(self) -> None:
        """Enable Compare for two comparable studies; a shown comparison follows the reader's findings."""
        p = self._parameterNode
        if not p:
            return
        found = comparison_problems(p.baselineSegmentation, p.followUpSegmentation)
        self.ui.compareButton.enabled = not found and self._job is None
        self.ui.compareButton.toolTip = found[0] if found else _("Register the follow-up onto the baseline, match "
                                                                 "the lesions and give the changes and the category.")
        if self._comparison is not None and not self._comparison.is_for(p.baselineSegmentation,
                                                                         p.followUpSegmentation, p.ranoCriteria):
            self.clearComparison()  # the pair or the criteria changed: the shown comparison no longer applies
        if self._comparison is not None:
            self._comparison.reassess(self.findings())
            self.ui.compareResultLabel.text = self._comparison.text()

    def clearComparison(self) -> None:
        self._comparison = None
        self.ui.compareResultLabel.text = ""
        self.ui.saveReportButton.enabled = False

    def onCompare(self) -> None:
        p = self._parameterNode
        self.clearComparison()
        with slicer.util.tryWithErrorDisplay(_("Failed to compare the studies."), waitCursor=True):
            try:
                self._comparison = compare_segmentations(p.baselineSegmentation, p.followUpSegmentation,
                                                         self.findings(), p.ranoCriteria)
            except InputError as error:
                self.ui.compareResultLabel.text = str(error)
                return
            self.ui.compareResultLabel.text = self._comparison.text()
            self.ui.saveReportButton.enabled = True

    def onSaveReport(self) -> None:
        path = qt.QFileDialog.getSaveFileName(self.parent, _("Save the comparison report"), "",
                                              _("HTML report (*.html)"))
        if not path or self._comparison is None:
            return
        with slicer.util.tryWithErrorDisplay(_("Failed to save the report."), waitCursor=True):
            if not self.logic.ensureDependencies(ask=True, requirements=dependencies.REPORT_REQUIREMENTS):
                return
            try:
                saved = save_report(self._comparison, path)
            except InputError as error:
                slicer.util.errorDisplay(str(error))
                return
            self.ui.compareResultLabel.text = self._comparison.text() + "\n" + _("Saved {name}.").format(name=saved)

    def removeLineObservers(self) -> None:
        for line, tag in self._lineObservers:
            line.RemoveObserver(tag)
        self._lineObservers = []

    def onShow3D(self, visible) -> None:
        if self._lastSegmentation is not None and self._lastSegmentation.GetScene() is not None:
            show_in_3d(self._lastSegmentation, visible)


#
# BrainTumorSegLogic
#

class BrainTumorSegLogic(ScriptedLoadableModuleLogic, SegmentationLogic):
    """Everything the module does, usable without the panel (batch scripts, tests).

    The engine runs through a runner: the default runs it in a separate process (Slicer stays responsive);
    pass `InProcessRunner` for a synchronous run in Slicer's own Python.
    """

    def __init__(self, runner_factory=None) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        SegmentationLogic.__init__(self, slicer.mrmlScene, runner_factory or self.processRunner)

    @staticmethod
    def processRunner() -> ProcessRunner:
        return ProcessRunner(python=shutil.which("PythonSlicer") or sys.executable)

    def getParameterNode(self):
        return BrainTumorSegParameterNode(super().getParameterNode())

    @staticmethod
    def modelPath(name: str) -> Path:
        cards = model_cards()
        return cards.get(name, cards.get(DEFAULT_MODEL, MODULE_DIR / "Resources" / "Models" / name / "model.json"))

    def ensureDependencies(self, ask: bool = True, requirements: Path = dependencies.REQUIREMENTS) -> bool:
        """Install missing Python packages (the engine's, or those of `requirements`) after the user agrees;
        False when declined."""
        missing = dependencies.missing(dependencies.read_requirements(requirements))
        if not missing:
            return True
        if ask and not slicer.util.confirmOkCancelDisplay(dependencies.install_question(missing)):
            return False
        torch = [r for r in missing if r.name == "torch"]
        if torch:
            self._installTorch(torch[0])
        others = [str(r) for r in missing if r.name != "torch"]
        if others:
            slicer.util.pip_install(others)
        still = dependencies.missing(dependencies.read_requirements(requirements))
        if still:
            raise RuntimeError(f"These packages could not be installed: {', '.join(r.name for r in still)}. "
                               "Check the internet connection and try again.")
        return True

    @staticmethod
    def _installTorch(requirement) -> None:
        try:
            import PyTorchUtils
        except ModuleNotFoundError:
            slicer.util.pip_install(str(requirement))
            return
        torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=False,
                                                              torchVersionRequirement=str(requirement.specifier))
        if torch is None:
            raise RuntimeError("PyTorch could not be installed; install it from the PyTorch Utils module.")


#
# BrainTumorSegTest
#

class BrainTumorSegTest(ScriptedLoadableModuleTest):
    """The Slicer test runner's test: the sample case through the default model, synchronously."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_SampleCaseSegmentation()

    def test_SampleCaseSegmentation(self):
        unmet = dependencies.missing(dependencies.read_requirements())
        if unmet:
            self.skipTest(dependencies.self_test_skip_reason(unmet))  # never installs: ctest must not download GBs
        self.delayDisplay("Loading the sample case")
        files = sample_case()
        inputs = {m: slicer.util.loadVolume(str(files[m])) for m in MODALITIES}

        logic = BrainTumorSegLogic(runner_factory=InProcessRunner)
        self.delayDisplay("Segmenting (synchronously, the shipped models)")
        result = logic.segment(inputs, RunSettings())

        segmentation = result.segmentation.GetSegmentation()
        names = [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]
        self.assertEqual(names, ["Necrotic tumor core", "Peritumoral edema", "Enhancing tumor"])
        for index in range(segmentation.GetNumberOfSegments()):
            segmentId = segmentation.GetNthSegmentID(index)
            voxels = slicer.util.arrayFromSegmentBinaryLabelmap(result.segmentation, segmentId, inputs["t1c"])
            self.assertGreater(int(voxels.sum()), 0, f"segment {names[index]} is empty")
        for key in VOLUME_KEYS:
            self.assertGreater(result.volumes_ml[key], 0.0, key)
        logging.info(f"BrainTumorSeg self-test volumes (mL): {result.volumes_ml}")
        self.delayDisplay("Test passed")
