"""Mixed precision + XLA for the frozen pass: choice logic, and the twin matches float32."""
from __future__ import annotations

import keras
import numpy as np
import pytest

from headstart.shared.model import accelerate
from headstart.shared.model.backbones import build_backbone, get_info
from headstart.shared.model.classifier import assemble
from headstart.shared.model.features import extract_features
from headstart.shared.runtime.errors import UserError


def test_choices(monkeypatch):
    import tensorflow as tf

    assert accelerate.wanted("on") is True and accelerate.wanted("off") is False
    monkeypatch.setattr(tf.config, "list_logical_devices", lambda kind: [])
    assert accelerate.wanted("auto") is False  # CPU only: off
    monkeypatch.setattr(tf.config, "list_logical_devices", lambda kind: ["/GPU:0"] if kind == "GPU" else [])
    assert accelerate.wanted("auto") is True
    with pytest.raises(UserError, match="accelerate"):
        accelerate.wanted("fast")


def test_mixed_xla_pass_matches_float32_and_leaves_the_model_alone():
    keras.utils.set_random_seed(0)
    clf = assemble(build_backbone("tiny", 32, "none"), get_info("tiny"), 32, n_classes=3, head_width=8)
    images = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3)).astype(np.uint8)
    plain = extract_features(clf.extractor, images, batch_size=4, desc="f32")
    mixed_model = accelerate.mixed_extractor(clf.extractor, clf.backbone)
    twin = next(layer for layer in mixed_model.layers if isinstance(layer, keras.Model))
    assert all(layer.dtype_policy.name == "mixed_float16" for layer in twin.layers[1:])
    # 5 images in batches of 64 with XLA: the partial batch is padded, one shape compiles.
    mixed = extract_features(mixed_model, images, batch_size=4, desc="mixed", jit=True)
    assert mixed.shape == plain.shape and mixed.dtype == np.float16
    np.testing.assert_allclose(mixed.astype("float32"), plain.astype("float32"), rtol=0.03, atol=0.03)
    assert all(layer.dtype_policy.name == "float32" for layer in clf.backbone.layers)
