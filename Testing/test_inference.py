"""The segmenter: region probabilities, test-time augmentation, precision, memory fallbacks, padding."""

from __future__ import annotations

import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch
from braintumorseg.inference import (
    MIRRORS,
    InferenceSettings,
    Segmenter,
    cpu_has_native_bfloat16,
    pad_to_multiple,
    core_subsets,
    tta_plan,
)
from braintumorseg.modelcard import load_model
from conftest import NEEDS_CUDA


@pytest.fixture
def card_copy(tiny_card, tmp_path):
    """A private copy of the tiny card and its weights that a test may damage."""
    for path in (tiny_card.path, tiny_card.weights_path):
        shutil.copy(path, tmp_path / path.name)
    return tmp_path / tiny_card.path.name


def test_segmenter_returns_region_probabilities_with_tta(tiny_card):
    segmenter = Segmenter(tiny_card, InferenceSettings(device="cpu", tta=True))
    volume = np.random.default_rng(0).normal(size=(4, 13, 17, 11)).astype(np.float32)
    probabilities = segmenter.predict(volume)
    assert probabilities.shape == (3, 13, 17, 11)
    assert probabilities.min() >= 0 and probabilities.max() <= 1


CHANNELS = ["t1", "t1c", "t2", "flair"]


def test_tta_averages_the_whole_tumour_over_the_subsets_that_keep_flair():
    passes, weights = tta_plan((0, 1, 2, 3), CHANNELS)
    given = [p for p in passes if p.channels == (0, 1, 2, 3)]
    others = [p.channels for p in passes if p.channels != (0, 1, 2, 3)]
    assert len(passes) == 15 and [p.flip for p in given] == MIRRORS
    assert len(set(others)) == len(others) == 7 and all(3 in s for s in others)  # FLAIR kept in each
    assert np.allclose(weights.sum(axis=0), 1)
    assert np.allclose(weights[:8], [[1 / 64, 1 / 8, 1 / 8]]) and np.allclose(weights[8:], [[1 / 8, 0, 0]])
    passes, weights = tta_plan((1, 3), CHANNELS)  # FLAIR + T1Gd: the pair in the 8 mirrors, FLAIR alone once
    assert [p.channels for p in passes] == [(1, 3)] * 8 + [(3,)] and [p.flip for p in passes] == MIRRORS + [()]
    assert np.allclose(weights[:8], [[1 / 16, 1 / 8, 1 / 8]]) and np.allclose(weights[8], [0.5, 0, 0])


def test_a_3d_t1gd_beside_thick_slices_reads_the_core_over_the_subsets_that_keep_t1gd_and_flair_not_et():
    assert core_subsets(("t1", "t2", "flair"), ("t1", "t1c", "t2", "flair"))
    assert not core_subsets(("t1", "t1c", "t2", "flair"), ("t1", "t1c", "t2", "flair"))  # all 2D: the raw exam
    assert not core_subsets((), ("t1", "t1c", "t2", "flair")) and not core_subsets(("t2",), ("t2", "flair"))
    plain = tta_plan((0, 1, 2, 3), CHANNELS)
    passes, weights = tta_plan((0, 1, 2, 3), CHANNELS, core_over_subsets=True)
    assert passes == plain[0] and np.allclose(weights[:, 0], plain[1][:, 0])  # same passes, the same WT
    assert np.allclose(weights.sum(axis=0), 1)
    core = {p.channels: w for p, w in zip(passes[8:], weights[8:, 1])}
    assert np.allclose(weights[:8, 1], 1 / 32)  # TC: the given four a quarter, over their 8 mirrors
    assert {s for s, w in core.items() if w > 0} == {(0, 1, 3), (1, 2, 3), (1, 3)}
    assert np.allclose([w for w in core.values() if w > 0], 1 / 4)
    assert np.allclose(weights[:, 2], plain[1][:, 2])  # ET: the given four only
    three = tta_plan((0, 1, 3), CHANNELS, core_over_subsets=True)[1]  # without T2
    assert not np.allclose(three[:, 1], tta_plan((0, 1, 3), CHANNELS)[1][:, 1])
    assert np.allclose(three[:, 2], tta_plan((0, 1, 3), CHANNELS)[1][:, 2])
    for present in ((0, 2, 3), (1, 2)):  # without T1Gd or FLAIR, the core stays with the given channels
        assert np.allclose(tta_plan(present, CHANNELS, core_over_subsets=True)[1], tta_plan(present, CHANNELS)[1])
    assert np.allclose(tta_plan((0, 1, 2, 3), CHANNELS, False, True)[1], 1 / 8)  # no subsets without dropout


@pytest.mark.parametrize("present, with_subsets", [((3,), True), ((0, 2), True), ((0, 1, 2, 3), False)])
def test_tta_without_a_choice_of_subsets_is_the_eight_mirrors(present, with_subsets):
    passes, weights = tta_plan(present, CHANNELS, with_subsets)
    assert all(p.channels == present for p in passes) and [p.flip for p in passes] == MIRRORS
    assert np.allclose(weights, 1 / 8)


def test_tta_with_flair_alone_is_the_mean_of_the_mirrored_passes(tiny_card):
    """Zero channels count as not given, so FLAIR alone gets its 8 mirrors, flipped back and averaged."""
    segmenter = Segmenter(replace(tiny_card, subset_tta=True), InferenceSettings(device="cpu", tta=True, amp=False))
    volume = np.zeros((4, 16, 16, 16), np.float32)
    volume[3] = np.random.default_rng(3).normal(size=(16, 16, 16))
    x = torch.from_numpy(volume)[None]
    with torch.inference_mode():
        expected = torch.stack([torch.sigmoid(segmenter.network(x.flip([a + 1 for a in axes]))).flip(
            [a + 1 for a in axes])[0] for axes in MIRRORS]).mean(0).numpy()
    assert np.abs(segmenter.predict(volume) - expected).max() < 1e-5
    volume[1] = 1.0  # with T1Gd given as well, 7 passes hold it and WT also averages FLAIR alone
    assert np.abs(segmenter.predict(volume) - expected).max() > 1e-4


def test_reduced_precision_runs_where_the_cpu_has_native_bfloat16(tiny_card):
    volume = np.random.default_rng(2).normal(size=(4, 16, 16, 16)).astype(np.float32)
    full = Segmenter(tiny_card, InferenceSettings(device="cpu", tta=False, amp=False))
    reduced = Segmenter(tiny_card, InferenceSettings(device="cpu", tta=False))
    assert full.precision == "float32"
    difference = np.abs(reduced.predict(volume) - full.predict(volume)).max()
    if cpu_has_native_bfloat16():
        assert reduced.precision == "bfloat16"
        assert 0 < difference < 0.05, "bfloat16 must change the probabilities a little, not a lot"
    else:  # emulated bfloat16 would be slower than float32, so the engine stays in float32
        assert reduced.precision == "float32" and difference == 0


def test_the_cpu_runs_the_network_channels_last_with_the_same_result(tiny_card):
    """Channels-last is only a memory layout: the probabilities equal the default layout's (float32)."""
    segmenter = Segmenter(tiny_card, InferenceSettings(device="cpu", tta=False, amp=False))
    convolution = next(m for m in segmenter.network.modules() if isinstance(m, torch.nn.Conv3d))
    assert convolution.weight.is_contiguous(memory_format=torch.channels_last_3d)
    volume = np.random.default_rng(4).normal(size=(4, 16, 16, 16)).astype(np.float32)
    default_layout = load_model(tiny_card)
    with torch.inference_mode():
        expected = torch.sigmoid(default_layout(torch.from_numpy(volume)[None]))[0].numpy()
    assert not next(m for m in default_layout.modules() if isinstance(m, torch.nn.Conv3d)).weight.is_contiguous(
        memory_format=torch.channels_last_3d)
    assert np.abs(segmenter.predict(volume) - expected).max() < 1e-5


@pytest.fixture
def cuda_memory_cap():
    """Caps this process's CUDA memory at what it holds now plus a given number of bytes; lifted afterwards."""
    total = torch.cuda.get_device_properties(0).total_memory

    def cap(extra: int) -> None:
        torch.cuda.empty_cache()
        torch.cuda.set_per_process_memory_fraction((torch.cuda.memory_reserved() + extra) / total)
    yield cap
    torch.cuda.set_per_process_memory_fraction(1.0)
    torch.cuda.empty_cache()


def cuda_bytes_needed(segmenter: Segmenter, volume: np.ndarray) -> tuple[int, np.ndarray]:
    """The CUDA memory one prediction reserves beyond what is held before it, and the prediction."""
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_reserved()
    probabilities = segmenter.predict(volume)
    return torch.cuda.max_memory_reserved() - before, probabilities


@NEEDS_CUDA
def test_cuda_out_of_memory_falls_back_to_the_cpu_with_the_cpu_result(tiny_card, cuda_memory_cap):
    volume = np.random.default_rng(5).normal(size=(4, 64, 64, 64)).astype(np.float32)
    expected = Segmenter(tiny_card, InferenceSettings(device="cpu", tta=False)).predict(volume)
    segmenter = Segmenter(tiny_card, InferenceSettings(device="cuda", tta=False))
    cuda_memory_cap(0)  # not a byte more on the GPU: the input cannot reach it, at 64³ nor in 32³ windows
    probabilities = segmenter.predict(volume)
    assert segmenter.warnings == ["cuda ran out of memory; retrying with [32, 32, 32] windows.",
                                  "cuda ran out of memory; running on the CPU."]
    assert segmenter.device.type == "cpu" and segmenter.roi == list(tiny_card.roi_size)
    assert np.abs(probabilities - expected).max() < 1e-6


@NEEDS_CUDA
def test_cuda_out_of_memory_retries_with_smaller_windows_on_the_gpu(tiny_card, cuda_memory_cap):
    volume = np.random.default_rng(6).normal(size=(4, 96, 96, 96)).astype(np.float32)
    whole, windows = (Segmenter(tiny_card, InferenceSettings(device="cuda", tta=False)) for _ in range(2))
    whole.roi, windows.roi = [96] * 3, [48] * 3
    whole.predict(volume), windows.predict(volume)  # one-time set-up (cuDNN's workspace) is not measured
    needed_whole, _ = cuda_bytes_needed(whole, volume)
    needed_windows, expected = cuda_bytes_needed(windows, volume)
    assert needed_windows < needed_whole, (needed_windows, needed_whole)
    segmenter = Segmenter(tiny_card, InferenceSettings(device="cuda", tta=False))
    segmenter.roi = [96] * 3
    cuda_memory_cap((needed_windows + needed_whole) // 2)  # enough for 48³ windows, not for one 96³ pass
    probabilities = segmenter.predict(volume)
    assert segmenter.warnings == ["cuda ran out of memory; retrying with [48, 48, 48] windows."]
    assert segmenter.device.type == "cuda"
    assert np.abs(probabilities - expected).max() < 1e-3


def test_a_volume_a_little_larger_than_the_window_runs_in_one_pass(tiny_card):
    """Up to `one_pass_up_to` times the window the whole volume is one pass: the same result as a window that
    covers it, not the blend of overlapping windows."""
    volume = np.random.default_rng(2).normal(size=(4, 20, 18, 16)).astype(np.float32)
    results = {}
    for name, roi, up_to in (("one pass", 16, 1.25), ("window that covers it", 24, 1.0), ("windows", 16, 1.0)):
        segmenter = Segmenter(tiny_card, InferenceSettings(device="cpu", tta=False, amp=False, one_pass_up_to=up_to))
        segmenter.roi = [roi] * 3
        results[name] = segmenter.predict(volume)
    assert np.abs(results["one pass"] - results["window that covers it"]).max() < 1e-6
    assert results["windows"].shape == (3,) + volume.shape[1:]
    assert np.abs(results["one pass"] - results["windows"]).max() > 1e-3


@NEEDS_CUDA
def test_cuda_out_of_memory_in_one_pass_retries_with_windows_of_the_cards_size(tiny_card, cuda_memory_cap):
    """A volume a little larger than the window runs in one pass; when that does not fit, windows of the card's
    size come before smaller ones."""
    volume = np.random.default_rng(7).normal(size=(4, 72, 72, 72)).astype(np.float32)
    whole, windows = (Segmenter(tiny_card, InferenceSettings(device="cuda", tta=False, one_pass_up_to=up_to))
                      for up_to in (1.25, 1.0))
    whole.predict(volume), windows.predict(volume)  # one-time set-up is not measured
    needed_whole, _ = cuda_bytes_needed(whole, volume)
    needed_windows, expected = cuda_bytes_needed(windows, volume)
    assert needed_windows < needed_whole, (needed_windows, needed_whole)
    segmenter = Segmenter(tiny_card, InferenceSettings(device="cuda", tta=False))
    cuda_memory_cap((needed_windows + needed_whole) // 2)  # enough for 64³ windows, not for one 72³ pass
    probabilities = segmenter.predict(volume)
    assert segmenter.warnings == ["cuda ran out of memory; retrying with [64, 64, 64] windows."]
    assert segmenter.roi == [64, 64, 64] and np.abs(probabilities - expected).max() < 1e-3


def test_pad_to_multiple():
    padded, shape = pad_to_multiple(torch.ones(2, 5, 8, 9), 8)
    assert tuple(padded.shape) == (2, 8, 8, 16) and shape == (5, 8, 9)
    assert padded[:, 5:].abs().sum() == 0
