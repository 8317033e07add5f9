"""headstart.shared.model.distribute: strategy selection (one-device path) and Batch array shards."""
from __future__ import annotations

import logging

import pytest

from headstart.shared.model.distribute import get_strategy


def test_one_device_gets_the_default_strategy(caplog):
    import tensorflow as tf

    if len(tf.config.list_logical_devices("GPU")) > 1:
        pytest.skip("more than one GPU visible: the one-device path does not apply")
    with caplog.at_level(logging.INFO, logger="headstart.shared.model.distribute"):
        strategy = get_strategy()
    assert strategy is tf.distribute.get_strategy()
    assert strategy.num_replicas_in_sync == 1
    assert "default strategy" in caplog.text
    with strategy.scope():
        v = tf.Variable(1.0)
    assert float(v.numpy()) == 1.0


def test_several_gpus_get_a_mirrored_strategy(monkeypatch):
    import tensorflow as tf

    class FakeDevice:
        def __init__(self, name: str) -> None:
            self.name = name

    made = {}
    monkeypatch.setattr(tf.config, "list_logical_devices",
                        lambda kind: [FakeDevice("/device:GPU:0"), FakeDevice("/device:GPU:1")])
    monkeypatch.setattr(tf.distribute, "MirroredStrategy", lambda devices: made.setdefault("d", devices))
    assert get_strategy() == ["/device:GPU:0", "/device:GPU:1"]
