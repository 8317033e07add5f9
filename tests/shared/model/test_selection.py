"""Head selection by k-fold CV on pooled features: determinism, quality, folding, edge cases."""
from __future__ import annotations

import numpy as np
import pytest

from headstart.shared.model.selection import (C_GRID, LINEAR_CHECKPOINTS, MLP_MIN_PER_LABEL, STEP_CHECKPOINTS,
                                              HeadChoice, keras_head, pooled, select_head, stratified_folds)


def _blobs(n_per: int, n_classes: int = 3, d: int = 40, spread: float = 2.5, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1, (n_classes, d))
    x = np.concatenate([c + rng.normal(0, spread, (n_per, d)) for c in centres])
    y = np.repeat(np.arange(n_classes), n_per)
    return np.abs(x).astype("float32") * 0.5 + x.astype("float32"), y  # nonnegative-ish like ReLU features


def test_deterministic_for_a_seed_and_records_why():
    x, y = _blobs(20)
    a = select_head(x, y, 3, seed=5)
    b = select_head(x, y, 3, seed=5)
    assert a.chosen == b.chosen and a.folds == 5
    for wa, wb in zip(a.weights, b.weights):
        np.testing.assert_array_equal(wa, wb)
    doc = a.doc()
    assert doc["summary"] == a.chosen.label() and "5-fold" in doc["reason"]
    kinds = {row["kind"] for row in doc["candidates"]}
    assert kinds == {"linear"}  # 20 images a label: too few for the hidden-layer heads to compete
    assert f"a label has 20 images < {MLP_MIN_PER_LABEL}" in doc["reason"]
    best = doc["candidates"][0]
    assert all(best["cv_accuracy"] >= row["cv_accuracy"] for row in doc["candidates"])


def test_hidden_layer_heads_compete_with_enough_images_a_label_at_low_cost():
    x, y = _blobs(MLP_MIN_PER_LABEL, d=8)  # cheap: 8 features
    doc = select_head(x, y, 3, seed=1).doc()
    assert {row["kind"] for row in doc["candidates"]} == {"linear", "mlp"}
    assert {row["steps"] for row in doc["candidates"]} == set(STEP_CHECKPOINTS) | set(LINEAR_CHECKPOINTS)
    x, y = _blobs(MLP_MIN_PER_LABEL - 1, d=8)
    assert {row["kind"] for row in select_head(x, y, 3, seed=1).table} == {"linear"}


def test_ties_go_to_the_linear_head_with_the_strongest_l2():
    x, y = _blobs(20, spread=0.05)  # every candidate is right on every held-out image
    sel = select_head(x, y, 3, seed=0)
    assert all(row["cv_accuracy"] == 1.0 for row in sel.table)
    assert sel.chosen == HeadChoice(kind="linear", c=min(C_GRID), steps=max(LINEAR_CHECKPOINTS))


def test_keeps_the_chosen_heads_out_of_fold_probabilities():
    x, y = _blobs(20, spread=5.0, seed=3)  # 60 images: five equal folds of 12
    sel = select_head(x, y, 3, seed=4)
    assert sel.held_out is not None
    probs, labels = sel.held_out
    assert probs.shape == (60, 3) and labels.tolist() == y.tolist()
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    best = sel.table[0]
    assert (best["kind"], best["c"], best["steps"]) == (sel.chosen.kind, sel.chosen.c, sel.chosen.steps)
    # equal folds: the pooled out-of-fold accuracy is the mean fold accuracy the table records
    assert float((probs.argmax(1) == labels).mean()) == pytest.approx(best["cv_accuracy"], abs=1e-4)
    few_x, few_y = _blobs(3)
    assert select_head(few_x[:7], few_y[:7], 3, seed=0).held_out is None  # label 2: one image, no CV


def test_matches_logistic_regression_on_held_out_data():
    sklearn = pytest.importorskip("sklearn")
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = _blobs(60, spread=4.0, seed=1)
    xt, yt = _blobs(200, spread=4.0, seed=1)  # same centres (same seed), fresh noise below
    rng = np.random.default_rng(9)
    xt = xt + rng.normal(0, 0.5, xt.shape).astype("float32")
    sel = select_head(x, y, 3, seed=0)
    layers = keras_head(sel, 3)
    probs = np.asarray(layers[-1](layers[-2](xt[:, None, None, :]) if len(layers) == 3
                                  else layers[0](xt[:, None, None, :])))
    ours = float((probs.argmax(1) == yt).mean())
    lr = make_pipeline(StandardScaler(), LogisticRegressionCV(Cs=[0.003, 0.01, 0.03, 0.1, 0.3, 1], max_iter=3000))
    theirs = float(lr.fit(x, y).score(xt, yt))
    assert sklearn and ours >= theirs - 0.03, (ours, theirs)


def test_keras_head_reproduces_the_standardised_numpy_model():
    x, y = _blobs(15, d=12)
    sel = select_head(x, y, 3, seed=2)
    layers = keras_head(sel, 3)
    out = x[:, None, None, :]
    for layer in layers:
        out = layer(out)
    xs = (x - sel.mean) / sel.scale
    if sel.chosen.kind == "linear":
        logits = xs @ sel.weights[0] + sel.weights[1]
    else:
        h = np.maximum(xs @ sel.weights[0] + sel.weights[1], 0)
        logits = h @ sel.weights[2] + sel.weights[3]
    expected = np.exp(logits - logits.max(1, keepdims=True))
    expected /= expected.sum(1, keepdims=True)
    np.testing.assert_allclose(np.asarray(out), expected, atol=2e-4)
    assert [layer.name for layer in layers][0] == "head_pool" and layers[-1].name == "predictions"


def test_too_few_images_to_cross_validate_fits_a_fixed_head_and_says_so():
    x, y = _blobs(3)
    x, y = x[:7], y[:7]  # label 2 has a single image
    sel = select_head(x, y, 3, seed=0)
    assert sel.folds == 1 and sel.chosen == HeadChoice(kind="linear", c=0.1, steps=200)
    assert "too few to cross-validate" in sel.reason and sel.table == []


def test_folds_are_stratified_and_views_of_one_image_share_a_fold():
    labels = np.repeat([0, 1, 2], [10, 7, 3])
    folds = stratified_folds(labels, 3, seed=4)
    for label in (0, 1, 2):
        counts = np.bincount(folds[labels == label], minlength=3)
        assert counts.max() - counts.min() <= 1
    x, y = _blobs(8, d=10)
    views = np.repeat(x, 2, axis=0) + np.tile([[0.0], [0.01]], (len(x), 1)).astype("float32")
    groups = np.repeat(np.arange(len(x)), 2)
    plain = np.tile([True, False], len(x))
    sel = select_head(views, np.repeat(y, 2), 3, seed=0, groups=groups, eval_rows=plain)
    assert sel.folds == 5 and sel.chosen.kind in ("linear", "mlp")


def test_class_weights_and_label_smoothing_change_the_fit():
    x, y = _blobs(10, d=8)
    plain = select_head(x, y, 3, seed=0)
    weighted = select_head(x, y, 3, seed=0, class_weights=[5.0, 1.0, 1.0], label_smoothing=0.1)
    assert not np.allclose(plain.weights[-1], weighted.weights[-1])


def test_pooled_averages_space_in_chunks():
    maps = np.arange(300 * 2 * 2 * 3, dtype="float16").reshape(300, 2, 2, 3)
    np.testing.assert_allclose(pooled(maps), maps.astype("float32").mean(axis=(1, 2)))
    assert pooled(maps[:, None]).shape == (300, 1, 3)


def test_the_choice_and_its_bits_do_not_depend_on_the_blas_thread_count():
    # 900 rows pad to 960 (a multiple of ROW_MULTIPLE): unpadded, OpenBLAS splits a product
    # whose inner size is the rows differently on 2 threads and the sums' bits change
    # (measured: unpadded, this case differs on 2 threads).
    from headstart.shared.model.blas import blas_threads

    x, y = _blobs(300, d=256, spread=4.0)
    runs = []
    for threads in (1, 2):
        with blas_threads(threads):
            runs.append(select_head(x, y, 3, seed=2))
    one, two = runs
    assert one.chosen == two.chosen
    for wa, wb in zip(one.weights, two.weights):
        np.testing.assert_array_equal(wa, wb)


def test_threads_only_for_many_rows_and_idle_cores():
    from headstart.shared.model.selection import MAX_THREADS, THREADED_ROWS, threads_for

    assert threads_for(THREADED_ROWS - 1, cpus=8, idle=8.0) == 1  # small products: one thread
    assert threads_for(THREADED_ROWS, cpus=8, idle=8.0) == MAX_THREADS
    assert threads_for(1000, cpus=2, idle=1.9) == 2
    assert threads_for(1000, cpus=2, idle=1.0) == 1  # another process holds a core: no spinning
    assert threads_for(1000, cpus=2, idle=0.2) == 1
    assert threads_for(1000, cpus=1, idle=4.0) == 1  # the quota, not the host
    assert threads_for(1000, cpus=4, idle=None) == 1  # unknown: one


def test_few_images_a_label_choose_the_nearest_class_mean_and_it_reloads_as_keras(tmp_path):
    import keras

    from headstart.shared.model.centroid import centroid_probs
    from headstart.shared.model.selection import CENTROID_MAX_PER_LABEL

    x, y = _blobs(6, d=32, spread=2.0)
    sel = select_head(x, y, 3, seed=1)
    assert sel.chosen.kind == "centroid" and sel.chosen.label() == "centroid (nearest class mean)"
    assert "nearest class mean" in sel.reason and f"<= {CENTROID_MAX_PER_LABEL}" in sel.reason
    assert sel.doc()["candidates"][0]["kind"] == "centroid"
    assert sel.held_out is not None and sel.held_out[0].shape == (len(y), 3)
    np.testing.assert_allclose(sel.held_out[0].sum(1), 1, rtol=1e-5)
    inp = keras.Input((2, 2, x.shape[1]))
    out = inp
    for layer in keras_head(sel, 3):
        out = layer(out)
    model = keras.Model(inp, out)
    xt = _blobs(4, d=32, spread=2.0, seed=9)[0]
    maps = np.repeat(np.repeat(xt[:, None, None, :], 2, 1), 2, 2)  # constant maps: GAP gives xt back
    want = centroid_probs([sel.mean, *sel.weights], xt)
    np.testing.assert_allclose(np.asarray(model(maps)), want, atol=1e-5)
    path = tmp_path / "m.keras"
    model.save(path)
    np.testing.assert_allclose(np.asarray(keras.models.load_model(path)(maps)), want, atol=1e-5)


def test_the_centroid_is_left_out_with_many_images_or_class_weights_and_loses_past_the_margin(monkeypatch):
    from headstart.shared.model import selection

    x, y = _blobs(12)
    assert "centroid (every label has > 10 images" in select_head(x, y, 3, seed=0).reason
    x, y = _blobs(6)
    weighted = select_head(x, y, 3, seed=0, class_weights=[2.0, 1.0, 1.0])
    assert weighted.chosen.kind == "linear" and "class weights were given" in weighted.reason
    monkeypatch.setattr(selection, "CENTROID_MARGIN", -1.0)  # it would have to win by a whole point
    raced = select_head(x, y, 3, seed=0)
    assert raced.chosen.kind == "linear" and any(r["kind"] == "centroid" for r in raced.doc()["candidates"])
