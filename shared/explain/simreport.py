"""Similarity results as rows, CSV and HTML sections (shared by the similarity and evaluate jobs)."""
from __future__ import annotations

import csv
import io
from typing import Any

import numpy as np

from headstart.shared.report import html as report
from headstart.shared.explain.similarity import Pairs, Scan, matrix_figure, sample_per_class

PAIR_COLUMNS = ["image_a", "image_b", "similarity", "label_a", "label_b", "split_a", "split_b"]
SHOWN = 50  # pairs listed in the HTML page (all of them go to the CSV)


def short(name: str) -> str:
    """The last path component, for compact captions."""
    return name.rstrip("/").rsplit("/", 1)[-1]


def pair_rows(pairs: Pairs, names: list[str], labels: list[str | None],
              splits: list[str | None]) -> list[list[Any]]:
    return [[names[i], names[j], round(s, 6), labels[i], labels[j], splits[i], splits[j]]
            for i, j, s in pairs.items]


def pairs_csv(rows: list[list[Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(PAIR_COLUMNS)
    writer.writerows(rows)
    return buf.getvalue()


def neighbour_rows(result: Scan, names: list[str], labels: list[str | None],
                   splits: list[str | None]) -> list[dict[str, Any]]:
    """One row per image: its nearest neighbours with their labels and similarity."""
    return [{"image": names[i], "label": labels[i], "split": splits[i],
             "neighbours": [{"image": names[j], "label": labels[j], "split": splits[j],
                             "similarity": round(float(s), 6)}
                            for j, s in zip(result.neighbours[i].tolist(), result.similarities[i])]}
            for i in range(len(names))]


def neighbour_agreement(result: Scan, labels: list[str | None]) -> float | None:
    """Share of images whose nearest neighbour has the same label (None without labels)."""
    if result.neighbours.shape[1] == 0 or any(label is None for label in labels):
        return None
    lab = np.asarray(labels, dtype=object)
    return float(np.mean(lab[result.neighbours[:, 0]] == lab))


def matrix_png(embeddings: np.ndarray, names: list[str], labels: list[str | None],
               per_class: int) -> bytes:
    """The labelled similarity-matrix figure for ``per_class`` images of each label."""
    idx = sample_per_class(labels, per_class)[:60]
    ticks = [f"{labels[i] or '?'}: {short(names[i])[:18]}" for i in idx]
    return matrix_figure(embeddings[idx], ticks)


def shown_indices(result: Scan) -> list[int]:
    """Images that appear in the pairs the HTML page lists (they need thumbnails)."""
    pairs = [result.duplicates] + ([result.leakage] if result.leakage is not None else [])
    return sorted({k for p in pairs for i, j, _ in p.items[:SHOWN] for k in (i, j)})


def sections(result: Scan, names: list[str], labels: list[str | None], splits: list[str | None],
             figure: bytes, thumbs: dict[int, bytes] | None = None) -> list[tuple[str, str]]:
    """HTML sections: matrix, duplicates, leakage. ``thumbs`` (image index -> small PNG, for
    every index of :func:`shown_indices`) puts both images of each listed pair side by side."""
    thumbs = thumbs or {}

    def pair_table(pairs: Pairs, what: str) -> str:
        rows = []
        for i, j, sim in pairs.items[:SHOWN]:
            pics = [thumbs[k] for k in (i, j) if k in thumbs]
            cell = report.thumbs(*pics, alt=f"{short(names[i])} / {short(names[j])}") if pics else ""
            rows.append([cell, report.esc(short(names[i])), report.esc(short(names[j])), f"{sim:.3f}",
                         *(report.esc(v) for v in (labels[i], labels[j], splits[i], splits[j]))])
        head = (f"<p>{pairs.total} {what} at cosine similarity ≥ {pairs.threshold:.3f}"
                f"{f'; the top {SHOWN} shown' if pairs.total > SHOWN else ''}.</p>")
        return head + (report.raw_table(["images", *PAIR_COLUMNS], rows) if rows else "")

    out = [("Similarity matrix", report.figure(figure, "cosine similarity matrix")
            + "<p class='muted'>Pooled backbone features (head_pool), cosine similarity.</p>"),
           ("Near-duplicates", pair_table(result.duplicates, "near-duplicate pairs"))]
    if result.leakage is not None:
        out.append(("Train/test leakage", pair_table(result.leakage, "pairs across splits")))
    return out


def thumbnail(image, side: int = 72) -> bytes:
    """A small PNG of a uint8 image for the pair tables."""
    import numpy as np
    from PIL import Image

    from headstart.shared.data.images import encode_png
    from headstart.shared.data.modelinput import to_uint8

    return encode_png(np.asarray(Image.fromarray(to_uint8(np.asarray(image))).resize((side, side),
                                                                                     Image.Resampling.BILINEAR)))
