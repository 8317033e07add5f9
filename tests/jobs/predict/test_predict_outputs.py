"""The predict gallery: bounded, least confident first, thumbnails made only for kept images."""
from __future__ import annotations

import numpy as np

from headstart.jobs.predict.outputs import Gallery, Predictions
from headstart.shared.data.imagesets import ImageRef
from headstart.shared.model.calibration import Calibration


def test_gallery_makes_thumbnails_only_for_the_images_it_keeps() -> None:
    made: list[float] = []

    def thumb(conf: float):
        def make() -> np.ndarray:
            made.append(conf)
            return np.full((8, 8, 3), int(conf * 100), np.uint8)
        return make

    gallery = Gallery(2)
    for conf in (0.9, 0.5, 0.95, 0.4, 0.99, 0.3):
        gallery.offer("a", conf, f"c{conf}", thumb(conf))
    assert made == [0.9, 0.5, 0.4, 0.3]  # 0.95 and 0.99 were never shown: never drawn
    tiles = gallery.ordered()["a"]
    assert [c for c, _, _ in tiles] == [0.3, 0.4]
    assert all(png.startswith(b"\x89PNG") for _, _, png in tiles)  # encoded once, at write time
    assert gallery.ordered()["a"] == tiles


def test_predictions_shrink_decoded_images_lazily_to_thumbnails() -> None:
    results = Predictions(["a", "b"], Calibration(), 2, 0.5, 1, thumb_size=12)
    try:
        refs = [ImageRef("/x", f"k{i}.jpg") for i in range(3)]
        probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8]], np.float32)
        decoded = [np.zeros((40 + i, 50, 3), np.uint8) for i in range(3)]
        results.add(refs, probs, decoded, [])
        tiles = results.gallery.ordered()
        assert sorted(tiles) == ["a", "b"] and np.allclose([c for c, _, _ in tiles["a"]], [0.6])
        from PIL import Image
        import io

        assert Image.open(io.BytesIO(tiles["a"][0][2])).size == (12, 12)
    finally:
        results.discard()
