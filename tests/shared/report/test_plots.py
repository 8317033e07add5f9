"""Figures are real PNGs (Pillow opens them) for ordinary and edge-case inputs."""
from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
from PIL import Image

from headstart.shared.report import plots


def open_png(data: bytes) -> Image.Image:
    assert isinstance(data, bytes)
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    img = Image.open(io.BytesIO(data))
    img.load()
    assert img.format == "PNG"
    assert img.width > 50 and img.height > 50
    return img


def test_training_curves_png():
    history = {"loss": [1.2, 0.8, 0.6, 0.5], "val_loss": [1.3, 0.9, 0.8, 0.85],
               "accuracy": [0.4, 0.6, 0.7, 0.8], "val_accuracy": [0.35, 0.55, 0.6, 0.6]}
    img = open_png(plots.training_curves(history, {"head": 0, "fine-tune": 2}))
    assert img.width > img.height  # two panels side by side


def test_training_curves_with_missing_series_draws_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        open_png(plots.training_curves({"loss": [0.5]}))
        open_png(plots.training_curves({}))


@pytest.mark.parametrize("normalized", [False, True])
def test_confusion_matrix_png(normalized):
    matrix = np.array([[5, 1, 0], [2, 3, 1], [0, 0, 4]], dtype=float)
    if normalized:
        matrix = matrix / matrix.sum(axis=1, keepdims=True)
    open_png(plots.confusion_matrix(matrix, ["a", "b", "<script>"], normalized))


def test_confusion_matrix_all_zero_and_many_labels():
    open_png(plots.confusion_matrix(np.zeros((2, 2)), ["a", "b"], normalized=False))
    n = 35  # above the annotation limit
    open_png(plots.confusion_matrix(np.eye(n) * 3, [f"label{i}" for i in range(n)], normalized=False))


def test_image_grid_png():
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (24, 24, 3), dtype=np.uint8) for _ in range(7)]
    captions = [f"true: label-{i} predicted: something rather long {i}" for i in range(7)]
    img = open_png(plots.image_grid(images, captions, cols=3))
    assert img.height > img.width * 0.8  # three rows of three columns


def test_image_grid_empty():
    open_png(plots.image_grid([], []))


def _green_pixels(png: bytes) -> int:
    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    return int(((abs(rgb[..., 0] - 44) < 25) & (abs(rgb[..., 1] - 160) < 25)
                & (abs(rgb[..., 2] - 44) < 25)).sum())


def test_training_curves_mark_the_restored_best_epoch():
    history = {"loss": [1.2, 0.8, 0.6, 0.5, 0.45], "val_loss": [1.3, 0.9, 0.7, 0.85, 0.9],
               "accuracy": [0.4, 0.6, 0.7, 0.8, 0.85], "val_accuracy": [0.35, 0.55, 0.67, 0.6, 0.5]}
    plain = plots.training_curves(history, {"head": 0})
    marked = plots.training_curves(history, {"head": 0}, {"head": 3})
    assert _green_pixels(marked) > _green_pixels(plain) + 200  # dotted line + star per panel
    open_png(plots.training_curves(history, {"head": 0, "fine-tune": 3}, {"head": 3, "fine-tune": 2}))


def test_lr_plot_limits_show_the_curve_up_to_its_minimum():
    from headstart.shared.model.lrfind import LRFind, lr_plot, lr_ylim

    losses = [2.0, 1.9, 1.5, 0.8, 0.3, 0.2, 0.5, 3.0, 50.0]
    low, high = lr_ylim(losses)
    assert low < 0.2 and 2.0 < high < 2.5  # everything until the minimum is in view
    assert lr_ylim([float("nan")]) is None
    result = LRFind(lrs=list(np.logspace(-5, 0, len(losses))), losses=losses, suggestion=1e-3)
    open_png(lr_plot(result))
