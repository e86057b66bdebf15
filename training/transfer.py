"""`pack` / `unpack`: move a prepared cache to another machine (a GPU) in small 8-bit, xz-compressed parts.

Each channel of a case is quantized linearly between its minimum and maximum to 256 levels (error at most
half a level: about 0.05 of a z-score unit on BraTS cases); the region masks travel exactly (bit-packed).
Parts are tar.xz files of plain `.npz` arrays (no pickle) and each holds the cache's manifest, so they can
be sent and unpacked one at a time; the manifest is written once every case is there.
"""

from __future__ import annotations

import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from braintumorseg.errors import InputError
from braintumorseg.output_paths import check_output_folder, write_bytes_atomic, write_text_atomic

from .data import MANIFEST, read_manifest
from .files import read_json

LEVELS = 255


@dataclass(frozen=True)
class PackSettings:
    """Which cache to pack, where the parts go and how many there are."""

    cache: Path
    out: Path
    parts: int = 1


def _npz_bytes(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def quantize(image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-channel uint8 codes, offsets and steps of a (channels, z, y, x) image."""
    flat = image.reshape(image.shape[0], -1).astype(np.float32)
    low, high = flat.min(axis=1), flat.max(axis=1)
    step = np.where(high > low, (high - low) / LEVELS, 1.0).astype(np.float32)
    codes = np.rint((image - low[:, None, None, None]) / step[:, None, None, None])
    return codes.astype(np.uint8), low, step


def dequantize(codes: np.ndarray, low: np.ndarray, step: np.ndarray) -> np.ndarray:
    """The float16 image that `quantize` encoded."""
    return (codes * step[:, None, None, None] + low[:, None, None, None]).astype(np.float16)


def pack_cache(settings: PackSettings) -> tuple[list[Path], float]:
    """Write the parts; returns their paths and the largest quantization error (in image units)."""
    if settings.parts < 1:
        raise InputError(f"--parts is a number of files (1 or more), not {settings.parts}.")
    manifest = read_manifest(settings.cache)
    check_output_folder(settings.out, "--out")
    entries = manifest["cases"]
    manifest_bytes = json.dumps(manifest, indent=2).encode()
    paths, largest = [], 0.0
    for index in range(settings.parts):
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:xz", preset=6) as tar:
            members = {MANIFEST: manifest_bytes}
            for entry in entries[index::settings.parts]:
                with np.load(settings.cache / entry["file"]) as data:
                    image, regions = data["image"], data["regions"]
                    codes, low, step = quantize(image)
                    largest = max(largest, float(np.abs(dequantize(codes, low, step).astype(np.float32)
                                                        - image.astype(np.float32)).max()))
                    members[entry["file"]] = _npz_bytes(
                        codes=codes, low=low, step=step, regions=np.packbits(regions.astype(bool)),
                        regions_shape=np.array(regions.shape), channels=data["channels"],
                        regions_present=data["regions_present"])
            for name, blob in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(blob)
                tar.addfile(info, io.BytesIO(blob))
        path = settings.out / f"part-{index + 1}-of-{settings.parts}.tar.xz"
        write_bytes_atomic(buffer.getvalue(), path)
        paths.append(path)
    return paths, largest


def _unpack_part(part: Path, cache: Path, expected: dict[str, Any]) -> dict[str, Any]:
    """Write the cases of one part into `cache`; returns the manifest it carries.

    A part whose manifest differs from `expected` (when given) is refused before anything is written.
    """
    not_a_part = f"{part} is not a part written by `python -m training pack`"
    try:
        with tarfile.open(part, mode="r:xz") as tar:
            members = {m.name: m for m in tar.getmembers() if m.isfile()}
            if MANIFEST not in members:
                raise InputError(f"{not_a_part} (it holds no {MANIFEST}).")
            manifest = json.loads(tar.extractfile(members.pop(MANIFEST)).read())
            if not isinstance(manifest, dict) or not isinstance(manifest.get("cases"), list):
                raise InputError(f"{not_a_part} (its {MANIFEST} lists no cases).")
            if expected and manifest != expected:
                raise InputError(f"{part} belongs to another cache than the one in {cache} or the parts "
                                 "before it: unpack each cache's parts into their own folder.")
            for name, member in members.items():
                with np.load(io.BytesIO(tar.extractfile(member).read())) as data:
                    shape = tuple(int(n) for n in data["regions_shape"])
                    regions = np.unpackbits(data["regions"], count=int(np.prod(shape))).reshape(shape)
                    arrays = {"image": dequantize(data["codes"], data["low"], data["step"]), "regions": regions,
                              "channels": data["channels"], "regions_present": data["regions_present"]}
                write_bytes_atomic(_npz_bytes(**arrays), cache / Path(name).name)
    except (OSError, tarfile.TarError, EOFError, KeyError, TypeError, ValueError) as error:
        raise InputError(f"{not_a_part} or it is damaged ({error}); pack the cache again.") from None
    return manifest


def unpack_parts(parts: list[Path], cache: Path) -> tuple[int, int]:
    """Unpack parts into `cache`; returns (cases now there, cases in the manifest).

    The manifest is written only when every case it lists is present, so a half-sent cache cannot be
    trained on by mistake.
    """
    if not parts:
        raise InputError("give the part files to unpack (part-K-of-N.tar.xz).")
    missing = [str(p) for p in parts if not Path(p).is_file()]
    if missing:
        raise InputError(f"{', '.join(missing)} not found; give the part-K-of-N.tar.xz files that pack wrote.")
    check_output_folder(cache, "--cache")
    existing = cache / MANIFEST
    manifest = read_json(existing, "unpack into an empty folder") if existing.is_file() else {}
    for part in parts:
        manifest = _unpack_part(part, cache, manifest)
    files = [entry["file"] for entry in manifest["cases"]]
    present = sum((cache / name).is_file() for name in files)
    if present == len(files):
        write_text_atomic(json.dumps(manifest, indent=2) + "\n", cache / MANIFEST)
    return present, len(files)
