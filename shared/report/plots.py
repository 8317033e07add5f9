"""PNG figures people look at: training curves, confusion matrices, image galleries."""
from __future__ import annotations

import io
import textwrap

import matplotlib

matplotlib.use("Agg")  # headless: containers and CI have no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def training_curves(history: dict[str, list[float]], phase_starts: dict[str, int] | None = None,
                    best_epochs: dict[str, int] | None = None) -> bytes:
    """Loss and accuracy per epoch, train vs validation, phase boundaries and the restored
    best epoch of each phase marked (``best_epochs``: phase -> 1-based epoch within the phase)."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    starts = phase_starts or {}
    for ax, metric in zip(axes, ("loss", "accuracy")):
        for key, style in ((metric, "-o"), (f"val_{metric}", "-s")):
            values = history.get(key, [])
            if values:
                ax.plot(range(1, len(values) + 1), values, style, ms=3,
                        label="train" if key == metric else "validation")
        for name, start in starts.items():
            if start > 0:
                ax.axvline(start + 0.5, color="grey", ls="--", lw=1)
                ax.text(start + 0.6, ax.get_ylim()[1], name, va="top", fontsize=8, color="grey")
        for n, (name, best) in enumerate((best_epochs or {}).items()):
            if best:
                x = starts.get(name, 0) + best
                series = history.get(f"val_{metric}") or history.get(metric) or []
                ax.axvline(x, color="tab:green", ls=":", lw=1.5,
                           label="best epoch (restored)" if n == 0 else None)
                if 0 < x <= len(series):
                    ax.plot([x], [series[x - 1]], "*", color="tab:green", ms=12)
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:  # a panel with no series has nothing to label
            ax.legend()
    return _png(fig)


def confusion_matrix(matrix: np.ndarray, labels: list[str], normalized: bool) -> bytes:
    """A labelled confusion-matrix heatmap (rows: true, columns: predicted)."""
    n = len(labels)
    size = max(4.0, 0.55 * n + 2)
    fig, ax = plt.subplots(figsize=(size, size * 0.9))
    im = ax.imshow(matrix, cmap="Blues", vmin=0, vmax=1 if normalized else None)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(n), labels, rotation=45, ha="right")
    ax.set_yticks(range(n), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("confusion matrix" + (" (row-normalised)" if normalized else " (counts)"))
    if n <= 30:
        high = matrix.max() if matrix.size else 0
        for i in range(n):
            for j in range(n):
                value = matrix[i, j]
                text = f"{value:.2f}" if normalized else f"{int(value)}"
                ax.text(j, i, text, ha="center", va="center", fontsize=7,
                        color="white" if high and value > 0.6 * high else "black")
    return _png(fig)


def image_grid(images: list[np.ndarray], captions: list[str], cols: int = 6) -> bytes:
    """A grid of images with short captions (e.g. the worst misclassifications)."""
    rows = max(1, int(np.ceil(len(images) / cols)))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 2.0, rows * 2.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, cap in zip(axes.flat, images, captions):
        ax.imshow(img)
        ax.set_title("\n".join(textwrap.wrap(cap, 26)), fontsize=7)
    return _png(fig)
