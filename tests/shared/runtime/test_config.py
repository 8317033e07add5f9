"""Config objects are built from the spec by keyword, with one set of defaults."""
from __future__ import annotations

import dataclasses

import pytest

from headstart.jobs.scrape.spec import ScrapeSpec
from headstart.jobs.train.spec import TrainSpec
from headstart.shared.auto.plan import AutoRequest
from headstart.shared.data.datasets import SplitConfig
from headstart.shared.data.imageprep import PrepOptions
from headstart.shared.model.recipe import RecipeConfig
from headstart.shared.runtime.errors import UserError


def _train_spec(**kw) -> TrainSpec:
    return TrainSpec(dataset="d", out="o", weights="none", **kw)


@pytest.mark.parametrize("cls", [RecipeConfig, SplitConfig, PrepOptions, AutoRequest])
def test_configs_are_keyword_only(cls) -> None:
    assert all(f.kw_only for f in dataclasses.fields(cls))
    with pytest.raises(TypeError):
        cls(1, 2)


def test_recipe_config_takes_every_value_and_default_from_the_spec() -> None:
    spec = _train_spec(batch_size=16)
    cfg = RecipeConfig.from_spec(spec, class_weights=[1.0, 2.0])
    for f in dataclasses.fields(RecipeConfig):
        if f.name != "class_weights":
            assert getattr(cfg, f.name) == getattr(spec, f.name), f.name
    assert cfg.epochs == TrainSpec.model_fields["epochs"].default == 20  # no drifting copy
    assert cfg.patience == 5 and cfg.class_weights == [1.0, 2.0]
    # no defaults of its own: a field the spec lacks is an error, not a silent value
    assert all(f.default is dataclasses.MISSING for f in dataclasses.fields(RecipeConfig))
    with pytest.raises(TypeError, match="no field"):
        RecipeConfig.from_spec(spec, class_weights=None, epochz=3)


def test_split_config_defaults_are_the_train_specs() -> None:
    spec = _train_spec(seed=9, max_per_label=4)
    assert SplitConfig.from_spec(spec) == SplitConfig(seed=9, max_per_label=4)
    for f in dataclasses.fields(SplitConfig):
        assert TrainSpec.model_fields[f.name].default == f.default, f.name
    # a stored spec.yaml (a mapping) that predates a field falls back to the same defaults
    assert SplitConfig.from_spec({"seed": 3, "epochs": 9}, min_per_label=1) == SplitConfig(seed=3, min_per_label=1)


def test_prep_options_follow_the_scrape_spec() -> None:
    spec = ScrapeSpec(urls="u.csv", out="o", min_side=8, resize=64, jpeg_quality=70)
    assert PrepOptions.from_spec(spec) == PrepOptions(min_side=8, resize=64, jpeg_quality=70)
    for f in dataclasses.fields(PrepOptions):
        assert ScrapeSpec.model_fields[f.name].default == f.default, f.name


def test_one_fraction_rule_for_every_spec_and_the_library() -> None:
    from headstart.jobs.scrape.spec import MergeSpec
    from headstart.shared.runtime.specs import build_spec

    for cls, base in ((TrainSpec, {"dataset": "d", "out": "o"}), (ScrapeSpec, {"urls": "u", "out": "o"}),
                      (MergeSpec, {"out": "o"})):
        for bad, match in (({"valid_fraction": 0.5, "test_fraction": 0.5}, "below 1"),
                           ({"test_fraction": -0.1}, "test_fraction")):
            with pytest.raises(UserError, match=match):
                build_spec(cls, base, bad)
        assert build_spec(cls, base, {"valid_fraction": 0.45, "test_fraction": 0.45})
    with pytest.raises(UserError, match="below 1"):
        SplitConfig(valid_fraction=0.6, test_fraction=0.4)
