"""The default recipe's head phase: the choice started beside the test pass is the inline one,
and the pooled scorer gives the head's probabilities."""
from __future__ import annotations

import threading
from types import SimpleNamespace

import numpy as np
import pytest

from headstart.shared.data.loading import LoadedSplit
from headstart.shared.model import selection_step
from headstart.shared.model.recipe import RecipeResult

SIZE, CLASSES = 32, 3


def _clf():
    import keras

    from headstart.shared.model.backbones import build_backbone, get_info
    from headstart.shared.model.classifier import assemble

    keras.utils.set_random_seed(0)
    return assemble(build_backbone("tiny", SIZE, "none"), get_info("tiny"), SIZE, CLASSES)


def _maps(n: int, views: int, shape: tuple[int, ...], seed: int, labels: np.ndarray) -> np.ndarray:
    """Feature maps ``(n, views, h, w, c)`` with a label signal plus noise (float16)."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).normal(0, 1, (CLASSES, shape[-1]))
    x = centres[labels][:, None, None, None, :] + rng.normal(0, 1.5, (n, views, *shape))
    return np.abs(x).astype(np.float16)


@pytest.fixture(scope="module")
def data():
    shape = tuple(int(d) for d in _clf().extractor.output.shape[1:])
    labels = {"train": np.arange(60) % CLASSES, "valid": np.arange(15) % CLASSES, "test": np.arange(12) % CLASSES}
    views = {"train": 2, "valid": 1, "test": 1}
    maps = {k: _maps(len(y), views[k], shape, i, y) for i, (k, y) in enumerate(labels.items())}
    splits = {k: LoadedSplit(k, np.zeros((0, SIZE, SIZE, 3), np.float32), y.astype(np.int32),
                             [f"{k}/{i}.jpg" for i in range(len(y))], streamed=True)
              for k, y in labels.items()}
    return maps, splits


def _cfg(**kw):
    return SimpleNamespace(**{"seed": 5, "class_weights": None, "label_smoothing": 0.0, **kw})


def test_the_choice_started_beside_the_pass_is_the_inline_choice(data, monkeypatch):
    maps, splits = data
    inline_clf, inline = _clf(), RecipeResult()
    selection_step.selected_head(inline_clf, splits, _cfg(), inline, maps)

    threads: list[tuple[str, bool, int | None]] = []
    real = selection_step.choose

    def spy(*args, **kwargs):
        me = threading.current_thread()
        threads.append((me.name, me.daemon, kwargs.get("threads")))
        return real(*args, **kwargs)

    monkeypatch.setattr(selection_step, "choose", spy)
    fit = {k: maps[k] for k in ("train", "valid")}
    future = selection_step.start_choice(fit, {k: splits[k].labels for k in fit}, CLASSES, seed=5,
                                         class_weights=None, label_smoothing=0.0)
    early_clf, early = _clf(), RecipeResult()
    selection_step.selected_head(early_clf, splits, _cfg(), early, maps, future)

    # its own thread, one BLAS thread, a daemon (a stopped run does not wait for it)
    assert threads == [("head-choice", True, 1)]
    assert early.selection.chosen == inline.selection.chosen
    assert early.selection.table == inline.selection.table
    for a, b in zip(early.selection.weights, inline.selection.weights):
        np.testing.assert_array_equal(a, b)  # bit for bit: BLAS threads do not change it
    for a, b in zip(early.held_out, inline.held_out):
        np.testing.assert_array_equal(a, b)
    assert early.history == inline.history
    for a, b in zip(early_clf.head.get_weights(), inline_clf.head.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert early.features.keys() == inline.features.keys() == {"train", "valid", "test"}
    for k in early.features:
        np.testing.assert_array_equal(early.features[k], inline.features[k])


def test_pooled_features_and_scorer_give_the_heads_probabilities(data):
    maps, splits = data
    clf, result = _clf(), RecipeResult()
    selection_step.selected_head(clf, splits, _cfg(), result, maps)
    for name, m in maps.items():
        pooled = result.features[name]
        assert pooled.shape == (len(m), m.shape[-1]) and pooled.dtype == np.float32
        via_head = np.asarray(clf.head(m[:, 0].astype(np.float32), training=False))
        via_scorer = np.asarray(result.scorer(pooled, training=False))
        np.testing.assert_allclose(via_scorer, via_head, atol=1e-5)
        np.testing.assert_allclose(via_scorer.sum(1), 1.0, atol=1e-5)


def test_a_failing_choice_fails_the_head_phase(data):
    maps, splits = data
    bad = {"train": maps["train"]}
    future = selection_step.start_choice(bad, {"train": np.zeros(3, np.int64)}, CLASSES, seed=5,
                                         class_weights=None, label_smoothing=0.0)  # 3 labels for 60 rows
    with pytest.raises(ValueError):
        selection_step.selected_head(_clf(), splits, _cfg(), RecipeResult(), maps, future)
