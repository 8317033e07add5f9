"""Selective int8 for TFLite: calibrate once, then keep just enough of the backbone float.

The head (global pooling, Dense, softmax) always stays float (:data:`INT8_FLOAT_OPS`). Some
backbones amplify small input perturbations block by block (the offline MobileNetV2 flips 20%
of its answers under Gaussian noise of 1 grey level), so int8 rounding in the early layers is
magnified by everything after them. :func:`search` measures how well the int8 model follows
``model.keras`` on a held-out check set (never the test split; :func:`agreement`) and, while
that is under the target, keeps more layers float **from the input end** (:data:`ORDER`),
doubling the count, within a bounded number of re-quantizations. One calibration serves every
step: only the quantization pass (under a second) is redone.
"""
from __future__ import annotations

import csv
import io
import logging
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from headstart.shared.runtime.errors import UserError

log = logging.getLogger("headstart.export")

# int8: the head stays float. The default recipe's linear head folds the feature
# standardisation into its Dense weights (W / std): per-tensor int8 weights round most of
# them to 0, and int8 pooled features lose the low-variance units those weights amplify.
# Measured with tf.lite.experimental.QuantizationDebugger (notes/predict.md): the head's
# FULLY_CONNECTED had 38x (tiny) / 1.5x (MobileNetV2) the rounding error of any other layer,
# and top-1 agreement rose from 25% to 100% (tiny) with these ops kept float.
INT8_FLOAT_OPS = ("MEAN", "FULLY_CONNECTED", "SOFTMAX")

# Which layers go float first. "input-first" (model order) was measured against the
# debugger's per-layer rmse/scale on the MobileNetV2 flowers run (notes/int8.md): with 16
# layers float, check agreement 0.967 input-first vs 0.907 by rmse/scale (and 2.8 vs 5.9 MB:
# early layers hold few weights); output-first stayed at the all-int8 0.79.
ORDER = "input-first"
FIRST_STEP = 4        # layers made float by the first re-quantization; doubled up to half,
FINAL_STEPS = 16      # then sixteenths of the backbone: agreement creeps up slowly past half
MAX_REQUANTIZE = 12   # re-quantizations after the first (measured 1.5-5 s each with the check)
HARD_QUANTILE = 0.5   # the check images whose model.keras top-2 margin is under this quantile
CONV_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D")


@dataclass
class Layer:
    """One quantizable tensor of the backbone, in model order, with its debugger statistics."""

    name: str          # the op's output tensor name, as ``denylisted_nodes`` takes it
    op: str
    rmse_scale: float  # RMSE of the int8 output against float, in units of its quantization step


class Calibrated:
    """A SavedModel calibrated once on ``representative`` (float images), re-quantizable with
    any set of layers kept float."""

    def __init__(self, saved_dir: str, representative: np.ndarray, debug_images: np.ndarray) -> None:
        import tensorflow as tf

        if representative is None or not len(representative):
            raise UserError("--quantize int8 needs training images for its representative set")
        conv = tf.lite.TFLiteConverter.from_saved_model(saved_dir)
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        conv.optimizations = [tf.lite.Optimize.DEFAULT]  # per-channel int8 conv weights
        rep = np.asarray(representative, np.float32)
        dbg = np.asarray(debug_images, np.float32)
        conv.representative_dataset = lambda: ([rep[i:i + 1]] for i in range(len(rep)))
        self._tf = tf
        try:
            self._debugger = tf.lite.experimental.QuantizationDebugger(
                converter=conv, debug_dataset=lambda: ([dbg[i:i + 1]] for i in range(len(dbg))),
                debug_options=self._options(()))
            self._debugger.run()  # per-layer error statistics, on a few held-out images
        except Exception as exc:  # noqa: BLE001 - ConverterError and friends carry the op list
            raise UserError(f"TFLite int8 conversion failed: {str(exc).strip()[-500:]}") from None
        buf = io.StringIO()
        self._debugger.layer_statistics_dump(buf)
        buf.seek(0)
        self.layers = [Layer(r["tensor_name"], r["op_name"], _ratio(r["mean_squared_error"], r["scale"]))
                       for r in csv.DictReader(buf) if r["op_name"] not in INT8_FLOAT_OPS]

    def _options(self, nodes):
        return self._tf.lite.experimental.QuantizationDebugOptions(
            denylisted_ops=list(INT8_FLOAT_OPS), denylisted_nodes=list(nodes))

    def quantize(self, float_layers: list[Layer]) -> bytes:
        """The int8 model (no debug ops) with the head and ``float_layers`` left float."""
        # The debugger quantizes from its stored calibration with its current options; setting
        # them through the private attribute skips the public setter's extra debug-model build.
        self._debugger._debug_options = self._options([layer.name for layer in float_layers])
        try:
            return self._debugger.get_nondebug_quantized_model()
        except Exception as exc:  # noqa: BLE001
            raise UserError(f"TFLite int8 quantization failed: {str(exc).strip()[-500:]}") from None


def _ratio(mse: str, scale: str) -> float:
    """RMSE / scale from the debugger's CSV; 0 where it has no finite value (a constant tensor:
    scale 0, or no samples) so parity.json stays valid JSON."""
    value = float(np.sqrt(float(mse))) / float(scale) if float(scale) > 0 else 0.0
    return value if np.isfinite(value) else 0.0


def schedule(n_layers: int, first: int = FIRST_STEP, max_steps: int = MAX_REQUANTIZE) -> list[int]:
    """Float-layer counts to try: 0, ``first`` doubling up to half the layers, then sixteenths,
    the last step all ``n_layers``; at most ``max_steps`` after the 0."""
    counts, k = [0], first
    while k < n_layers / 2:
        counts.append(k)
        k *= 2
    counts += [round(n_layers * i / FINAL_STEPS) for i in range(FINAL_STEPS // 2, FINAL_STEPS + 1)]
    counts = sorted({c for c in counts if 0 <= c <= n_layers})
    if len(counts) > max_steps + 1:  # keep the 0, the largest and the steps nearest the end
        counts = [0] + counts[-max_steps:]
    return counts


def ordered(layers: list[Layer]) -> list[Layer]:
    """The layers in the order they are made float (:data:`ORDER`)."""
    return list(layers)  # model order is input-first


def _margins(probs: np.ndarray, top: np.ndarray) -> np.ndarray:
    """Probability of class ``top`` minus the largest other one, per row."""
    rows = np.arange(len(probs))
    others = probs.copy()
    others[rows, top] = -np.inf
    return probs[rows, top] - others.max(1)


def agreement(ref: np.ndarray, got: np.ndarray, quantile: float = HARD_QUANTILE) -> dict:
    """How far an export's probabilities ``got`` follow ``ref`` (model.keras) on a check set.

    ``check_agreement``: plain top-1 agreement. ``hard_agreement``: the expected agreement on
    images as uncertain as the check set's less confident part (top-2 margin under the
    ``quantile``): an image flips when the export's loss of margin exceeds its margin, so
    every (margin, loss) pair of the check set is counted - a smooth estimate with far less
    sampling noise than counting flips, and one for harder images than the check set holds
    (measured: the flowers test split has lower margins than its validation split,
    notes/int8.md)."""
    top = ref.argmax(1)
    margin = _margins(ref, top)
    loss = margin - _margins(got, top)
    hard = np.sort(margin)[: max(1, int(np.ceil(len(margin) * quantile)))]
    return {"check_agreement": float(np.mean(got.argmax(1) == top)),
            "hard_agreement": float(np.mean(loss[None, :] <= hard[:, None])),
            "mean_margin_loss": float(np.mean(np.abs(loss)))}


@dataclass
class SearchResult:
    model: bytes
    float_layers: list[Layer]
    steps: list[dict] = field(default_factory=list)
    met: bool = False


def search(calibrated: Calibrated, measure: Callable[[bytes], dict], target: float) -> SearchResult:
    """Quantize with the head float; while ``measure(model)["hard_agreement"] < target`` (see
    :func:`agreement`), keep more backbone layers float (:func:`schedule`, :func:`ordered`).
    ``target`` 0: one conversion, no check."""
    order = ordered(calibrated.layers)
    if target <= 0:
        return SearchResult(calibrated.quantize([]), [])
    counts, steps = schedule(len(order)), []
    for i, k in enumerate(counts):
        t0 = time.monotonic()
        model = calibrated.quantize(order[:k])
        found = measure(model)
        steps.append({"float_layers": k, **{key: round(v, 4) for key, v in found.items()},
                      "seconds": round(time.monotonic() - t0, 2)})
        score = found["hard_agreement"]
        log.info("int8 step %d/%d: %d of %d backbone layers float -> check agreement %.4f, on the "
                 "less confident half %.4f (target %.3f)", i + 1, len(counts), k, len(order),
                 found.get("check_agreement", float("nan")), score, target)
        if score >= target or i == len(counts) - 1:
            return SearchResult(model, order[:k], steps, score >= target)
    raise AssertionError("unreachable: schedule() is never empty")


def conv_layers(path: str) -> tuple[int, int]:
    """``(int8, total)`` CONV_2D / DEPTHWISE_CONV_2D ops of a TFLite file (int8 = int8 filter)."""
    import warnings

    import tensorflow as tf

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        interp = tf.lite.Interpreter(model_path=path)
    dtypes = {t["index"]: t["dtype"] for t in interp.get_tensor_details()}
    convs = [op for op in interp._get_ops_details() if op["op_name"] in CONV_OPS]
    return sum(dtypes.get(int(op["inputs"][1])) == np.int8 for op in convs), len(convs)
