"""headstart.shared.auto.scoring / autoplan / lrfind: candidates, the probe, the budgeted search, the plan."""
from __future__ import annotations

import numpy as np
import pytest

from headstart.shared.auto import scoring as auto

from headstart.shared.auto import plan as autoplan
from headstart.shared.auto.scoring import Candidate, Score, ScoringData, parse_candidate, parse_candidates, search
from headstart.shared.runtime.errors import UserError


def test_parse_candidate_defaults_and_explicit_values() -> None:
    assert parse_candidate("mobilenet_v2") == Candidate("mobilenet_v2", 224, "imagenet")
    assert parse_candidate("tiny@32") == Candidate("tiny", 32, "none")
    c = parse_candidate(" resnet50@160=/m/r.weights.h5 ")
    assert (c.backbone, c.size, c.weights, c.name) == ("resnet50", 160, "/m/r.weights.h5", "resnet50@160")


@pytest.mark.parametrize("text,needle", [("resnet9000@224", "resnet9000"), ("tiny@big", "tiny@big"),
                                         ("tiny@8", "image_size"), ("tiny@32=w.bin", "w.bin")])
def test_parse_candidate_names_the_bad_value(text: str, needle: str) -> None:
    with pytest.raises(UserError, match=needle):
        parse_candidate(text)


def test_candidates_cheapest_first_and_deduplicated() -> None:
    got = parse_candidates(["resnet50@224", "mobilenet_v2@224", "mobilenet_v2@160=/a.weights.h5"],
                           extra=[Candidate("mobilenet_v2", 160, "/b.weights.h5")])
    assert [c.name for c in got] == ["mobilenet_v2@160", "mobilenet_v2@224", "resnet50@224"]
    assert got[0].weights == "/b.weights.h5", "the first mention wins"
    assert [c.name for c in parse_candidates(None)][0] == "mobilenet_v2@160"


def test_cv_probe_separates_separable_data_and_not_noise() -> None:
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 20)
    signal = np.eye(3)[y] * 3 + rng.normal(size=(60, 3))
    x = np.concatenate([signal, rng.normal(size=(60, 20))], axis=1)
    acc, loss = auto.cv_probe(x, y, 3, seed=1)
    assert acc > 0.9 and loss < 0.5
    noise_acc, _ = auto.cv_probe(rng.normal(size=(60, 23)), y, 3, seed=1)
    assert noise_acc < 0.6


def test_folds_are_stratified() -> None:
    y = np.repeat(np.arange(2), [7, 3])
    folds = auto.folds_of(y, seed=0)
    assert set(folds) == {0, 1, 2}
    for f in range(3):
        assert set(y[folds == f]) == {0, 1}


def _data(n: int = 10) -> ScoringData:
    return ScoringData(np.zeros((n, 8, 8, 3), np.uint8), np.arange(n) % 2, 2)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _scorer(accuracies: dict[str, float], clock: FakeClock, per_image: float = 0.1):
    def score(cand: Candidate, data: ScoringData) -> Score:
        if cand.name not in accuracies:
            return Score(cand.name, cand.backbone, cand.size, cand.weights, "skipped", note="no weights")
        seconds = per_image * len(data.labels) * cand.cost / Candidate("tiny", 16).cost
        clock.now += seconds
        return Score(cand.name, cand.backbone, cand.size, cand.weights, "scored", accuracies[cand.name],
                     1 - accuracies[cand.name], seconds, seconds_per_image=seconds / len(data.labels))
    return score


def test_search_picks_the_best_and_skips_missing_weights() -> None:
    clock = FakeClock()
    cands = parse_candidates(["tiny@16", "tiny@32", "tiny@64"])
    scores = search(cands, _data(), 1e9, _scorer({"tiny@16": 0.6, "tiny@64": 0.9}, clock), clock)
    assert [s.status for s in scores] == ["scored", "skipped", "scored"]
    assert auto.best_of(scores).name == "tiny@64"


def test_search_respects_the_budget() -> None:
    clock = FakeClock()
    cands = parse_candidates(["tiny@16", "tiny@32", "tiny@64"])  # costs 1, 4, 16 (x 1s)
    scorer = _scorer({"tiny@16": 0.5, "tiny@32": 0.6, "tiny@64": 0.9}, clock)
    scores = search(cands, _data(), budget_s=6.0, scorer=scorer, clock=clock)
    assert [s.status for s in scores] == ["scored", "scored", "skipped"]
    assert "budget" in scores[2].note and clock.now <= 6.0
    assert auto.best_of(scores).name == "tiny@32"


def test_search_without_any_usable_candidate_is_a_user_error() -> None:
    clock = FakeClock()
    with pytest.raises(UserError, match="no candidate backbone could be scored"):
        search(parse_candidates(["tiny@16"]), _data(), 1e9, _scorer({}, clock), clock)


def test_ties_go_to_the_cheaper_candidate() -> None:
    clock = FakeClock()
    scorer = _scorer({"tiny@16": 0.8, "tiny@32": 0.8}, clock)
    scores = search(parse_candidates(["tiny@32", "tiny@16"]), _data(), 1e9, scorer, clock)
    assert auto.best_of(scores).name == "tiny@16"


def test_score_candidate_skips_unavailable_weights(tmp_path) -> None:
    cand = Candidate("mobilenet_v2", 32, str(tmp_path / "gone.weights.h5"))
    score = auto.score_candidate(cand, _data())
    assert score.status == "skipped" and "not found" in score.note


def test_head_shape_grows_with_the_data() -> None:
    assert autoplan.head_shape(10)[:2] == (256, 0.5)
    assert autoplan.head_shape(100)[:2] == (512, 0.4)
    assert autoplan.head_shape(1000)[:2] == (1024, 0.3)


def test_class_weights_only_when_imbalanced() -> None:
    assert autoplan.class_weights({"a": 10, "b": 12})[0] is None
    weights, reason = autoplan.class_weights({"a": 30, "b": 10})
    assert weights == {"a": 0.6667, "b": 2.0} and "balanced" in reason


def test_label_warnings() -> None:
    warnings = autoplan.label_warnings({"a": 3, "b": 50})
    assert len(warnings) == 1 and "'a' has only 3" in warnings[0]


def test_fine_tune_needs_data_and_time() -> None:
    best = Score("m", "mobilenet_v2", 160, "x", "scored", 0.9, 0.3, base_layers=100,
                 seconds_per_image=0.01)
    layers, _, reason = autoplan.fine_tune_plan(20, 100, 20, best, 1e6, 5)
    assert layers == 0 and "smallest label" in reason
    layers, _, reason = autoplan.fine_tune_plan(200, 1000, 200, best, 10.0, 5)
    assert layers == 0 and "budget" in reason
    layers, epochs, _ = autoplan.fine_tune_plan(200, 1000, 200, best, 1e6, 5)
    assert (layers, epochs) == (10, 5)
    layers, epochs, _ = autoplan.fine_tune_plan(600, 1000, 200, best, 100.0, 5)
    assert (layers, epochs) == (20, 2)


def test_lr_range_test_suggests_a_rate_in_range() -> None:
    from headstart.shared.model.lrfind import LR_MAX, LR_MIN, lr_plot, lr_range_test

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(2), 32)
    maps = (rng.normal(size=(64, 2, 2, 8)) + y[:, None, None, None]).astype(np.float16)
    found = lr_range_test(maps, y, 2, width=16, dropout=0.0, steps=40)
    assert LR_MIN <= found.suggestion <= LR_MAX and len(found.lrs) == len(found.losses) >= 12
    assert found.lrs == sorted(found.lrs) and "range test" in found.reason
    assert lr_plot(found)[:4] == b"\x89PNG"


def test_class_weight_list() -> None:
    from headstart.shared.data.datasets import class_weight_list

    assert class_weight_list(None, ["a", "b"]) is None
    assert class_weight_list({"b": 3.0}, ["a", "b"]) == [1.0, 3.0]
    with pytest.raises(UserError, match="'c'"):
        class_weight_list({"c": 1.0}, ["a", "b"])


def test_deadline_cuts_a_candidates_extraction_short_but_keeps_every_label() -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 40)  # sorted by label: a plain prefix would be one label
    data = ScoringData(rng.integers(0, 256, (120, 16, 16, 3), dtype=np.uint8), labels, 3, 0, 2)
    data.deadline = 0.0  # long past
    score = auto.score_candidate(Candidate("tiny", 16, "none"), data)
    assert score.status == "scored" and score.note.startswith("budget: scored on ")
    n = len(score.index)
    assert auto.MIN_SCORED_PER_LABEL * 3 <= n < 120 and len(score.maps) == n
    assert np.bincount(labels[score.index]).min() >= auto.MIN_SCORED_PER_LABEL
    data.deadline = None
    assert len(auto.score_candidate(Candidate("tiny", 16, "none"), data).index) == 120


def test_budget_use_and_overrun_warning() -> None:
    scores = [Score("tiny@16", "tiny", 16, "none", "scored", seconds=100.0)]
    use = autoplan.budget_use(180.0, 30.0, scores, 5.0, 216.0)
    assert use["candidates_s"] == {"tiny@16": 100.0} and use["left_for_training_s"] == -36.0
    assert autoplan.budget_warnings(180.0, 80.0, 30.0) == []
    (warning,) = autoplan.budget_warnings(180.0, 216.0, 30.0)
    assert "216s of its 90s share of the 180s budget" in warning
