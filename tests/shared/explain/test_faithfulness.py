"""Deletion/insertion faithfulness against random maps and a centre prior, with intervals."""
from __future__ import annotations

import numpy as np
import pytest

from headstart.shared.explain import faithfulness as fm

SIDE = 32


def _images(n: int, seed: int = 0) -> np.ndarray:
    """Dark noise with a bright square at a random off-centre corner: the evidence."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 40, (n, SIDE, SIDE, 3)).astype(np.float32)
    corners = rng.integers(0, 2, (n, 2))
    for img, (cy, cx) in zip(images, corners):
        y, x = cy * (SIDE - 10), cx * (SIDE - 10)
        img[y:y + 10, x:x + 10] = 255
    return images


def _predict(images: np.ndarray) -> np.ndarray:
    """A 'model' whose class-0 probability is the share of bright pixels (saturating)."""
    bright = (images.mean(axis=3) > 200).mean(axis=(1, 2))
    p = np.clip(bright * 8, 0, 1)
    return np.stack([p, 1 - p], axis=1).astype(np.float32)


def _evidence_maps(images: np.ndarray, cells: int = 8) -> np.ndarray:
    """Feature-map-resolution maps of where the bright pixels are (what a good CAM finds)."""
    bright = (images.mean(axis=3) > 200).astype(np.float32)
    n = len(images)
    return bright.reshape(n, cells, SIDE // cells, cells, SIDE // cells).mean(axis=(2, 4))


def test_centre_prior_and_top_mask_edges() -> None:
    prior = fm.centre_prior(2, 9, 9)
    assert prior.shape == (2, 9, 9) and prior[0].argmax() == 4 * 9 + 4
    maps = np.random.default_rng(0).random((3, 10, 10))
    assert not fm.top_mask(maps, 0.0).any() and fm.top_mask(maps, 1.0).all()
    assert fm.top_mask(maps, 0.25).sum(axis=(1, 2)).tolist() == [25, 25, 25]


def test_evidence_maps_beat_both_controls() -> None:
    images = _images(24)
    targets = np.zeros(24, int)
    base = _predict(images)[:, 0]
    faith = fm.faithfulness(_predict, images, _evidence_maps(images), targets, base, 0.2, seed=1,
                            steps=6, random_maps=3)
    for control in fm.CONTROLS:
        assert (faith.deletion["map"] < faith.deletion[control]).mean() > 0.9
        assert (faith.insertion["map"] > faith.insertion[control]).mean() > 0.9
    assert (faith.drop_top > faith.drop_centre).all()
    np.testing.assert_allclose(faith.score, faith.drop_top - faith.drop_random, atol=1e-6)
    doc = fm.summarize(faith.deletion, faith.insertion)
    assert doc["beats_controls"] and doc["images"] == 24
    assert set(doc["margin"]) == {f"{c}_vs_{k}" for c in ("deletion", "insertion") for k in fm.CONTROLS}
    assert fm.verdict(doc).startswith("The maps beat both controls")


def test_a_map_that_only_finds_the_middle_does_not_beat_the_centre_prior() -> None:
    images = _images(24)
    targets = np.zeros(24, int)
    base = _predict(images)[:, 0]
    centre = fm.centre_prior(24, 8, 8)
    faith = fm.faithfulness(_predict, images, centre, targets, base, 0.2, steps=4, random_maps=2)
    doc = fm.summarize(faith.deletion, faith.insertion)
    assert not doc["margin"]["deletion_vs_centre"]["beats"]
    assert not doc["beats_controls"]
    assert "do not clearly beat" in fm.verdict(doc) and "deletion vs centre" in fm.verdict(doc)


def test_mean_ci() -> None:
    rng = np.random.default_rng(0)
    values = rng.normal(0.1, 1.0, 400)
    mean, low, high = fm.mean_ci(values)
    assert low < mean < high and mean == pytest.approx(values.mean())
    assert high - low == pytest.approx(2 * 1.96 / np.sqrt(400), rel=0.2)
    assert np.isnan(fm.mean_ci(np.zeros(0))[0])


def test_a_model_that_ignores_the_image_beats_nothing() -> None:
    images = _images(12)
    constant = lambda x: np.tile(np.asarray([[0.25, 0.75]], np.float32), (len(x), 1))  # noqa: E731
    faith = fm.faithfulness(constant, images, _evidence_maps(images), np.zeros(12, int),
                            np.full(12, 0.25, np.float32), steps=3, random_maps=2)
    doc = fm.summarize(faith.deletion, faith.insertion)
    assert not any(m["beats"] for m in doc["margin"].values()) and not doc["beats_controls"]
