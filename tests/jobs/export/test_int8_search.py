"""The selective int8 search (jobs/export/int8.py) on the tiny backbone: one calibration for
the whole module, agreement scripted so every branch of the search is taken."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from headstart.jobs.export import int8


@pytest.fixture(scope="module")
def calibrated(trained_run: str, tmp_path_factory: pytest.TempPathFactory) -> int8.Calibrated:
    from headstart.jobs.export import convert
    from headstart.shared.model.trained import load_trained

    model, _ = convert.portable(load_trained(trained_run).model)
    saved = convert.saved_model(model, str(tmp_path_factory.mktemp("int8") / "saved"))
    rep = np.random.default_rng(0).uniform(0, 255, (8, 32, 32, 3)).astype(np.float32)
    return int8.Calibrated(saved, rep, rep[:2])


def _convs(model: bytes, path: Path) -> tuple[int, int]:
    path.write_bytes(model)
    return int8.conv_layers(str(path))


def _scripted(*scores: float):
    """A ``measure`` that returns ``scores`` in turn (as hard agreement) and records its calls."""
    it, seen = iter(scores), []

    def measure(model: bytes) -> dict:
        seen.append(model)
        return {"check_agreement": 1.0, "hard_agreement": next(it)}
    measure.seen = seen  # type: ignore[attr-defined]
    return measure


def test_schedule_doubles_then_sixteenths_and_ends_all_float() -> None:
    assert int8.schedule(65) == [0, 4, 8, 16, 32, 37, 41, 45, 49, 53, 57, 61, 65]
    assert int8.schedule(0) == [0] and int8.schedule(1) == [0, 1]
    for n in (3, 8, 12, 65, 150, 400):
        counts = int8.schedule(n)
        assert counts[0] == 0 and counts[-1] == n and counts == sorted(set(counts))
        assert len(counts) - 1 <= int8.MAX_REQUANTIZE  # bounded re-quantizations
    assert int8.schedule(400, max_steps=3) == [0, 350, 375, 400]


def test_agreement_counts_every_margin_loss_pair_on_the_less_confident_half() -> None:
    # Four images, margins 0.8 / 0.6 / 0.2 / 0.0 (a tie broken towards class 0).
    ref = np.array([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4], [0.5, 0.5]])
    # The export loses 0.1 / 0.3 / 0.3 / -0.2 of margin on them; image 2 keeps its top-1.
    got = np.array([[0.85, 0.15], [0.65, 0.35], [0.45, 0.55], [0.6, 0.4]])
    found = int8.agreement(ref, got)
    assert found["check_agreement"] == 0.75  # image 2 flipped
    # Less confident half: margins 0.0 and 0.2. Against losses (0.1, 0.3, 0.3, -0.2): margin 0.0
    # survives only the -0.2 loss, margin 0.2 survives 0.1 and -0.2 -> 3 of 8 pairs.
    assert found["hard_agreement"] == pytest.approx(3 / 8)
    assert int8.agreement(ref, got, quantile=1.0)["hard_agreement"] == pytest.approx(
        (1 + 2 + 4 + 4) / 16)  # margins 0, 0.2, 0.6, 0.8
    assert int8.agreement(ref, ref)["check_agreement"] == 1.0
    assert int8.agreement(ref, ref)["hard_agreement"] == 1.0  # no loss: a tie (margin 0) stays


def test_layers_are_the_backbone_in_model_order(calibrated: int8.Calibrated) -> None:
    layers = calibrated.layers
    assert len(layers) >= 4 and {layer.op for layer in layers} & set(int8.CONV_OPS)
    assert not {layer.op for layer in layers} & set(int8.INT8_FLOAT_OPS)  # the head is never listed
    assert all(np.isfinite(layer.rmse_scale) and layer.rmse_scale >= 0 for layer in layers)
    assert int8.ordered(layers) == layers  # input-first


def test_search_stops_at_once_when_the_first_conversion_meets(calibrated: int8.Calibrated,
                                                              tmp_path: Path) -> None:
    measure = _scripted(0.99)
    found = int8.search(calibrated, measure, 0.98)
    assert found.met and found.float_layers == [] and measure.seen == [found.model]  # type: ignore[attr-defined]
    assert [s["float_layers"] for s in found.steps] == [0] and found.steps[0]["hard_agreement"] == 0.99
    n_int8, n_conv = _convs(found.model, tmp_path / "m.tflite")
    assert n_conv >= 1 and n_int8 == n_conv  # the whole backbone int8


def test_low_agreement_grows_the_float_set(calibrated: int8.Calibrated, tmp_path: Path) -> None:
    counts = int8.schedule(len(calibrated.layers))
    found = int8.search(calibrated, _scripted(0.5, 0.7, 0.99, 1.0), 0.98)
    assert found.met and [s["float_layers"] for s in found.steps] == counts[:3]
    assert [s["hard_agreement"] for s in found.steps] == [0.5, 0.7, 0.99]
    assert found.float_layers == calibrated.layers[:counts[2]]  # from the input end
    first = _convs(calibrated.quantize([]), tmp_path / "a.tflite")
    grown = _convs(found.model, tmp_path / "b.tflite")
    assert grown[1] == first[1] and grown[0] < first[0]  # the layers kept float really are float
    # Never met: every step is tried, the last with the whole backbone float, and it says so.
    never = int8.search(calibrated, _scripted(*[0.1] * len(counts)), 0.98)
    assert not never.met and [s["float_layers"] for s in never.steps] == counts
    assert never.float_layers == calibrated.layers and _convs(never.model, tmp_path / "c.tflite")[0] == 0


def test_target_zero_is_one_conversion_without_a_check(calibrated: int8.Calibrated) -> None:
    def fail(model: bytes) -> dict:
        raise AssertionError("no check with target 0")

    found = int8.search(calibrated, fail, 0.0)
    assert found.steps == [] and found.float_layers == [] and not found.met and found.model


def test_rmse_scale_of_degenerate_tensors_is_zero_not_inf() -> None:
    assert int8._ratio("0.25", "0.5") == pytest.approx(1.0)
    assert int8._ratio("0.25", "0") == 0.0 and int8._ratio("nan", "0.5") == 0.0
