"""BrainTumorSegLib.sample_data: the Sample Data source of the bundled case, fetched the way Slicer's Sample Data
module fetches it (urllib's urlretrieve of each URI into the cache, then `slicer.util.computeChecksum`)."""

from __future__ import annotations

import inspect
import urllib.request
from pathlib import Path

import pytest

from BrainTumorSegLib.sample_data import sample_data_source

THUMBNAIL = Path(__file__).resolve().parents[1] / "BrainTumorSeg" / "Resources" / "Icons" / "BrainTumorSegSample.png"

# SampleData.SampleDataLogic.registerCustomSampleDataSource's parameters at Slicer/Slicer v5.10.0
# (Modules/Scripted/SampleData/SampleData.py blob a1bc76e) and v5.12.3 (blob f8a4857): the same list.
REGISTER_PARAMETERS = {"category", "sampleName", "uris", "fileNames", "nodeNames", "customDownloader",
                       "thumbnailFileName", "loadFileTypes", "loadFiles", "loadFileProperties", "checksums",
                       "loadFileType"}


def test_the_source_uses_only_parameters_the_supported_slicers_take():
    source = sample_data_source(THUMBNAIL)
    assert set(source) <= REGISTER_PARAMETERS - {"loadFileType"}  # loadFileType is the deprecated spelling
    lengths = {len(source[k]) for k in ("uris", "fileNames", "nodeNames", "checksums", "loadFileTypes")}
    assert lengths == {4}  # SampleDataSource raises unless every list has one entry per file
    assert Path(source["thumbnailFileName"]).is_file()


def test_each_uri_copies_into_a_cache_and_matches_its_checksum(tmp_path):
    util = pytest.importorskip("slicer.util")
    assert {"algo", "filePath"} <= set(inspect.signature(util.computeChecksum).parameters)
    source = sample_data_source(THUMBNAIL)
    for uri, name, checksum in zip(source["uris"], source["fileNames"], source["checksums"]):
        assert uri.startswith("file://")
        copy = tmp_path / name
        urllib.request.urlretrieve(uri, str(copy))  # what SampleDataLogic.downloadFile does with the URI
        algo, digest = util.extractAlgoAndDigest(checksum)
        assert algo == "SHA256" and util.computeChecksum(algo, str(copy)) == digest


def test_a_stale_copy_in_the_cache_fails_its_checksum(tmp_path):
    util = pytest.importorskip("slicer.util")
    source = sample_data_source(THUMBNAIL)
    stale = tmp_path / source["fileNames"][0]
    stale.write_bytes(b"another extension's file of the same name")
    algo, digest = util.extractAlgoAndDigest(source["checksums"][0])
    assert util.computeChecksum(algo, str(stale)) != digest  # so Sample Data copies the bundled file again
