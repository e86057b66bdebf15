"""Output files and folders: checked before any work (writable, never one of the inputs), then written atomically
(a target never holds a half-written file)."""

from __future__ import annotations

import os
from pathlib import Path

import SimpleITK as sitk

from .errors import InputError


def check_output_path(path: str, what: str, suffixes: tuple[str, ...] | None = None) -> Path:
    """Refuse an output path that cannot be written before any work is done."""
    target = Path(path)
    if suffixes and not target.name.lower().endswith(suffixes):
        raise InputError(f"{what} {path} must end with one of {', '.join(suffixes)}.")
    if target.is_dir():
        raise InputError(f"{what} {path} is a folder; give a file name.")
    _check_writable(target.parent, what, path)
    return target


def check_output_folder(path: str, what: str) -> Path:
    """Refuse an output folder that is a file or cannot be created, before any work is done."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{what} {path} is a file; give a folder.")
    _check_writable(folder, what, path)
    return folder


def _check_writable(path: Path, what: str, given: str) -> None:
    """Refuse unless the nearest existing path at or above `path` is a writable folder."""
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK):
        raise InputError(f"cannot write {what} {given}: {existing} is not a writable folder.")


def check_outputs_distinct(outputs: dict[str, Path | None], inputs: dict[str, str]) -> None:
    """Refuse an output path that is an input or another output, before any work is done."""
    seen = dict(inputs)
    for flag, path in outputs.items():
        if path is None:
            continue
        for other, given in seen.items():
            if path.resolve() == Path(given).resolve():
                raise InputError(f"the {flag} {path} is the {other} file; choose another file name.")
        seen[flag] = str(path)


def write_image_atomic(image: sitk.Image, path: str | os.PathLike) -> None:
    """Write an image so that the target never holds a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes[-2:]) if path.name.endswith(".nii.gz") else path.suffix
    temporary = path.with_name(f".{path.name}.partial{os.getpid()}{suffix}")
    try:
        sitk.WriteImage(image, str(temporary), useCompression=True)
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


def write_bytes_atomic(data: bytes, path: str | os.PathLike) -> None:
    """Write a file (report, summary, figure) so that the target never holds a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.partial{os.getpid()}")
    try:
        temporary.write_bytes(data)
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


def write_text_atomic(text: str, path: str | os.PathLike) -> None:
    """Write a UTF-8 text file atomically."""
    write_bytes_atomic(text.encode("utf-8"), path)
