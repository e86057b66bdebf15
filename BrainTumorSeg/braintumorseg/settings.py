"""Every setting of a run in one place, without PyTorch: its default, its choices, its command-line flag and its
name in the Slicer panel's parameter node.

The command line builds its arguments from `RunSettings` (`add_arguments`, `RunSettings.from_namespace`), the
Slicer panel's process runner passes one back as arguments (`RunSettings.to_argv`), the in-process runner hands
it to `Pipeline.from_settings`, and the panel's parameter node takes its defaults and choices from `DEFAULTS` and
`choices`. Adding an option means adding a field here (and a widget and a parameter in the panel).
"""

from __future__ import annotations

import argparse
from dataclasses import MISSING, dataclass, field, fields, replace
from typing import Any, Callable, Mapping

from .labels import OUTPUT_CONVENTIONS

DEVICES = ("auto", "cpu", "cuda", "mps")
TRAINING_DEVICES = ("auto", "cpu", "cuda")  # `python -m training` runs on CUDA or the CPU
SKULL_STRIP_MODES = ("auto", "on", "off")
# How the skull is stripped; the first is the default, chosen by measurement end to end (docs/brain-extraction.md).
BRAIN_EXTRACTION_METHODS = ("template", "deepbet")
REGISTER_MODES = ("auto", "on", "off")
NETWORK_SPACES = ("auto", "atlas", "native")


@dataclass(frozen=True)
class Flag:
    """How one setting appears outside the engine."""

    help: str
    choices: tuple[str, ...] = ()
    parameter: str = ""  # its name in the Slicer parameter node; "" when the panel sets it otherwise
    metavar: str = ""
    minimum: float | None = None
    maximum: float | None = None
    const: str = ""  # the value the flag takes when given without one (a former switch)


def _option(default: Any, help: str, **flag: Any) -> Any:
    return field(default=default, metadata={"flag": Flag(help, **flag)})


@dataclass(frozen=True)
class RunSettings:
    """What a user can set for one run (the model's own settings come from its card)."""

    model: str = _option("", "one model card for every input (default: the shipped pair, brats-segresnet and, "
                             "for exams that need aligning or skull stripping, brats-segresnet-native)",
                         metavar="CARD.json")
    device: str = _option("auto", "where the network runs; auto = CUDA, then MPS, then CPU (default: auto)",
                          choices=DEVICES, parameter="device")
    bias_correction: bool = _option(True, "N4 bias-field correction (default: on)", parameter="biasCorrection")
    register: str = _option("auto", "rigidly register the inputs to the reference (mutual information), each then "
                                    "checked; auto = those on another grid or found misaligned by a quick check; "
                                    "--register alone = on (default: auto)", choices=REGISTER_MODES,
                            parameter="registerMode", const="on")
    network_space: str = _option("auto", "the grid the network sees: atlas = the case turned into the atlas pose of "
                                         "the BraTS training copies, native = the reference grid reoriented axial "
                                         "LPS; auto = native for a co-registered skull-stripped set, else atlas "
                                         "(default: auto); labels are always written on the reference grid",
                                 choices=NETWORK_SPACES)
    skull_strip: str = _option("auto", "strip the skull (see --brain-extraction); auto = only when the inputs show "
                                       "the head (default: auto)",
                               choices=SKULL_STRIP_MODES, parameter="skullStrip")
    brain_extraction: str = _option(BRAIN_EXTRACTION_METHODS[0], "how the skull is stripped: deepbet = a brain "
                                    "extraction network (its weights ship with it), template = register a brain "
                                    "template (MNI ICBM152) onto the case (default: template)",
                                    choices=BRAIN_EXTRACTION_METHODS)
    trust_sequences: bool = _option(False, "skip the check that each file is the sequence its flag says (file name, "
                                           "header echo time, contrast inside the brain; default: checked)")
    tta: bool = _option(True, "average mirrored passes of the network, and for the whole tumour passes with the "
                              "subsets of the sequences that keep FLAIR (for the core too, those that keep T1Gd "
                              "and FLAIR, when a 3D T1Gd comes with thick-slice series; default: on; --no-tta is "
                              "faster)",
                        parameter="testTimeAugmentation")
    fp32: bool = _option(False, "run the network in float32 (default: float16 on CUDA, bfloat16 on a CPU that "
                                "computes it natively, about twice as fast; labels differ in a few boundary voxels)")
    min_cluster_ml: float = _option(0.1, "remove tumour clusters smaller than this; a smaller core cluster becomes "
                                         "edema, an enhancing one necrotic core (mL; default 0.1)",
                                    parameter="minimumClusterMl", metavar="ML", minimum=0.0, maximum=100.0)
    label_convention: str = _option("brats2021", "output labels: brats2021 = 1 necrotic core, 2 edema, "
                                                 "4 enhancing; brats2023 = 1/2/3 (default brats2021)",
                                    choices=OUTPUT_CONVENTIONS)
    threads: int | None = _option(None, "CPU threads (default: all)", metavar="N", minimum=1)

    def to_argv(self) -> list[str]:
        """The command-line arguments that give these settings (every one, so the defaults of the engine that
        reads them do not matter)."""
        argv: list[str] = []
        for item in fields(self):
            value = getattr(self, item.name)
            if isinstance(value, bool):
                argv.append(f"--{_flag_name(item.name)}" if value else f"--no-{_flag_name(item.name)}")
            elif value is not None and value != "":
                argv += [f"--{_flag_name(item.name)}", repr(value) if isinstance(value, float) else str(value)]
        return argv

    @classmethod
    def from_namespace(cls, args: argparse.Namespace) -> RunSettings:
        """The settings parsed by a parser that `add_arguments` built."""
        return cls(**{item.name: getattr(args, item.name) for item in fields(cls)})

    @classmethod
    def from_parameters(cls, value: Callable[[str], Any], **given: Any) -> RunSettings:
        """The settings a Slicer parameter node holds (`value(name)` reads one), plus those given here."""
        found = {item.name: value(_flag(item).parameter) for item in fields(cls) if _flag(item).parameter}
        return cls(**{**found, **given})

    def with_changes(self, **changes: Any) -> RunSettings:
        return replace(self, **changes)


DEFAULTS = RunSettings()

BACKENDS = ("local", "dask")


@dataclass(frozen=True)
class CohortSettings:
    """How `batch` runs its cases (docs/cohorts.md); none of this changes the labels."""

    workers: int = _option(0, "processes reading and preprocessing the next cases (registration, N4, "
                              "normalization) while this one runs the network, each model in memory once; 0 = one "
                              "case after another (default 0). With --backend dask --scheduler local: the local "
                              "cluster's processes", metavar="N", minimum=0)
    retry_failed: bool = _option(False, "segment again the cases that failed in an earlier run into OUTDIR "
                                        "(finished cases are skipped while their inputs, settings and model are "
                                        "unchanged; default: off)")
    shard: str = _option("", "do only shard K of N of the cases found (every N-th from the K-th), for job arrays; "
                             "writes summary-shard-K-of-N.json/.csv", metavar="K/N")
    backend: str = _option("local", "local = this machine; dask = one task per case on a Dask cluster, the models "
                                    "once per worker process (pip install 'braintumorseg[dask]'; default local)",
                           choices=BACKENDS)
    scheduler: str = _option("local", "with --backend dask: the scheduler's address (tcp://host:8786), or local "
                                      "for a cluster on this machine (default local)", metavar="ADDRESS")

    @classmethod
    def from_namespace(cls, args: argparse.Namespace) -> CohortSettings:
        """The settings parsed by a parser that `add_arguments(parser, CohortSettings)` built."""
        return cls(**{item.name: getattr(args, item.name) for item in fields(cls)})


def _flag(item) -> Flag:
    return item.metadata["flag"]


def _flag_name(name: str) -> str:
    return name.replace("_", "-")


def flags() -> Mapping[str, Flag]:
    """Setting name → how it appears outside the engine."""
    return {item.name: _flag(item) for item in fields(RunSettings)}


def choices(name: str) -> list[str]:
    """The values a setting may take (for the panel's Choice annotations)."""
    return list(flags()[name].choices)


def value_range(name: str) -> tuple[float, float]:
    flag = flags()[name]
    return float(flag.minimum), float(flag.maximum)


def add_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup, settings: type = RunSettings) -> None:
    """Add one argument per setting of `settings` (RunSettings or CohortSettings); booleans get --x and --no-x
    (the older spellings keep working)."""
    for item in fields(settings):
        flag = _flag(item)
        names = [f"--{_flag_name(item.name)}"]
        default = item.default if item.default is not MISSING else None
        if isinstance(default, bool):
            parser.add_argument(*names, dest=item.name, action=argparse.BooleanOptionalAction, default=default,
                                help=flag.help)
            continue
        kind = _bounded(type(default) if default is not None else int, flag)
        optional = {"nargs": "?", "const": flag.const} if flag.const else {}
        parser.add_argument(*names, dest=item.name, type=kind, default=default, help=flag.help,
                            choices=flag.choices or None, metavar=flag.metavar or None, **optional)


def _bounded(kind: type, flag: Flag) -> Callable[[str], Any]:
    """A parser for a number within the flag's bounds, or the plain type."""
    if flag.minimum is None and flag.maximum is None:
        return kind

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
        if flag.minimum is not None and not value >= flag.minimum:
            raise argparse.ArgumentTypeError(f"must be {flag.minimum:g} or more")
        if flag.maximum is not None and not value <= flag.maximum:
            raise argparse.ArgumentTypeError(f"must be {flag.maximum:g} or less")
        return value

    parse.__name__ = kind.__name__
    return parse
