"""Learning-rate range test on cached feature maps (Smith, 2015; the "LR finder").

A throwaway head of the chosen shape trains on cached maps while the learning rate grows
geometrically each step; the smoothed loss falls, bottoms out and then diverges. The
suggestion is the learning rate of the lowest smoothed loss divided by ten (the steepest
stable region), clipped to a range Adam heads train well in.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger(__name__)

LR_MIN, LR_MAX = 1e-4, 1e-2


@dataclass
class LRFind:
    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)  # smoothed
    suggestion: float = 1e-3
    reason: str = ""


def _head(maps: np.ndarray, n_classes: int, width: int, dropout: float):
    import keras

    from headstart.shared.model.classifier import head_layers

    x = inputs = keras.Input(maps.shape[1:])
    for layer in head_layers(n_classes, width, dropout):
        x = layer(x)
    return keras.Model(inputs, x, name="lrfind_head")


def lr_range_test(maps: np.ndarray, labels: np.ndarray, n_classes: int, width: int, dropout: float,
                  label_smoothing: float = 0.0, batch_size: int = 32, seed: int = 1337,
                  start: float = 1e-6, end: float = 1.0, steps: int = 100) -> LRFind:
    """Run the range test on ``maps`` ``(n, h, w, c)`` and suggest a head learning rate."""
    import keras

    from headstart.shared.model.training import compile_model

    keras.utils.set_random_seed(seed)
    model = _head(maps, n_classes, width, dropout)
    compile_model(model, start, label_smoothing)
    rng = np.random.default_rng(seed)
    batch = min(batch_size, len(labels))
    result, avg, best = LRFind(), 0.0, math.inf
    for step in range(steps):
        lr = start * (end / start) ** (step / (steps - 1))
        model.optimizer.learning_rate.assign(lr)
        idx = np.sort(rng.choice(len(labels), batch, replace=False))
        loss = float(model.train_on_batch(maps[idx].astype(np.float32), labels[idx],
                                          return_dict=True)["loss"])
        avg = 0.9 * avg + 0.1 * loss
        smooth = avg / (1 - 0.9 ** (step + 1))
        result.lrs.append(lr)
        result.losses.append(smooth)
        best = min(best, smooth)
        if step > 10 and (not math.isfinite(smooth) or smooth > 4 * best):
            break
    return _suggest(result)


def _suggest(result: LRFind) -> LRFind:
    """Learning rate of the lowest smoothed loss / 10, clipped to [LR_MIN, LR_MAX]."""
    losses = np.asarray(result.losses)
    i = int(np.nanargmin(np.where(np.isfinite(losses), losses, np.inf)))
    raw = result.lrs[i] / 10
    result.suggestion = float(f"{min(max(raw, LR_MIN), LR_MAX):.2g}")
    result.reason = (f"range test: lowest smoothed loss {losses[i]:.3f} at lr={result.lrs[i]:.2g}; "
                     f"a tenth of it is {raw:.2g}"
                     + (f", clipped to {result.suggestion:g}" if not LR_MIN <= raw <= LR_MAX else ""))
    log.info("auto: %s", result.reason)
    return result


def lr_plot(result: LRFind) -> bytes:
    """PNG of the smoothed loss against the learning rate (log axis), suggestion marked."""
    from headstart.shared.report.plots import _png, plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(result.lrs, result.losses, "-")
    ax.axvline(result.suggestion, color="grey", ls="--", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("smoothed training loss")
    ax.set_title(f"LR range test (chosen {result.suggestion:g})")
    ax.grid(alpha=0.3)
    limits = lr_ylim(result.losses)
    if limits:
        ax.set_ylim(*limits)
    return _png(fig)


def lr_ylim(losses: list[float]) -> tuple[float, float] | None:
    """y-limits that show the whole curve up to its minimum (where the choice is made);
    only the divergent tail after it may leave the plot."""
    finite = np.asarray([v for v in losses if math.isfinite(v)], float)
    if finite.size == 0:
        return None
    low, high = float(finite.min()), float(finite[: int(finite.argmin()) + 1].max())
    pad = max(high - low, abs(low) * 0.05, 1e-6) * 0.08
    return low - pad, high + pad
