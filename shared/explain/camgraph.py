"""A differentiable view of a Headstart classifier for class-activation maps.

Headstart models nest their backbone as one layer (``backbone``), so the last conv feature
map is *inside* a sub-model and not reachable as ``model.get_layer(...).output`` of the outer
graph; Grad-CAM libraries that look for it there fail. :class:`CamGraph` rebuilds the path:

    image -> outer layers before the backbone -> a model on the backbone's own graph that
    returns [target activation, backbone output] -> the head layers -> class logits

reusing the very same layer objects (shared weights). The final softmax is split off so the
class score is the pre-softmax logit, as in the Grad-CAM paper. :meth:`CamGraph.check`
verifies the rebuilt path reproduces the original model's probabilities.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from headstart.shared.model.classifier import BACKBONE_LAYER
from headstart.shared.runtime.errors import UserError

log = logging.getLogger(__name__)


def _is_spatial(layer: keras.layers.Layer) -> bool:
    """Whether a layer outputs a (batch, height, width, channels) feature map."""
    if isinstance(layer, keras.layers.InputLayer):
        return False
    try:
        shape = layer.output.shape
    except (AttributeError, ValueError):
        return False
    return len(shape) == 4


def _find_backbone(model: keras.Model) -> keras.Model | None:
    """The nested backbone: the layer named ``backbone``, else the last nested Model."""
    names = {layer.name: layer for layer in model.layers}
    if isinstance(names.get(BACKBONE_LAYER), keras.Model):
        return names[BACKBONE_LAYER]
    nested = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    return nested[-1] if nested else None


def spatial_layers(model: keras.Model) -> list[str]:
    """Names of layers with a 4-D output, backbone-internal ones when the backbone is nested."""
    graph = _find_backbone(model) or model
    return [layer.name for layer in graph.layers if _is_spatial(layer)]


def find_target_layer(model: keras.Model, name: str | None = None) -> str:
    """The layer whose activation the CAM weights: ``name`` if given, else the last 4-D one."""
    candidates = spatial_layers(model)
    if not candidates:
        raise UserError(f"model {model.name!r} has no layer with a 2-D feature map (4-D output); "
                        "Grad-CAM needs a convolutional backbone")
    if name is None:
        return candidates[-1]
    if name not in candidates:
        raise UserError(f"`layer` must name a layer with a 4-D output inside the backbone; "
                        f"the last ones are {candidates[-8:]}. Received: layer={name!r}")
    return name


@dataclass
class CamGraph:
    """The rebuilt forward path: ``forward(images) -> (activations, logits)``."""

    pre: list[keras.layers.Layer]    # outer layers before the backbone (resize, preprocess)
    inner: keras.Model               # backbone input -> [target activation, backbone output]
    head: list[keras.layers.Layer]   # outer layers after the backbone, classifier excluded
    classifier: keras.layers.Layer   # the final layer (Dense with softmax in Headstart models)
    split_softmax: bool              # True when ``classifier`` is a softmax Dense: score = logit
    layer_name: str
    feature_shape: tuple[int, int]   # (height, width) of the target activation

    def forward(self, images: Any, training: bool = False) -> tuple[Any, Any]:
        """Target activations and class scores (logits) for a batch of raw 0-255 images."""
        x = images
        for layer in self.pre:
            x = layer(x)
        acts, x = self.inner(x, training=training)
        for layer in self.head:
            x = layer(x, training=training)
        if self.split_softmax:
            logits = keras.ops.matmul(x, self.classifier.kernel)
            if self.classifier.use_bias:
                logits = logits + self.classifier.bias
        else:
            logits = self.classifier(x, training=training)
        return acts, logits

    def probabilities(self, logits: Any) -> Any:
        return keras.ops.softmax(logits, axis=-1) if self.split_softmax else logits

    def check(self, model: keras.Model, size: int = 48, atol: float = 1e-4) -> float:
        """Max |p_rebuilt - p_model| on two random images; raise if above ``atol``."""
        rng = np.random.default_rng(0)
        h, w = (d or size for d in model.input.shape[1:3])  # fixed-size models get their size
        images = rng.uniform(0, 255, (2, h, w, 3)).astype("float32")
        _, logits = self.forward(images)
        ours = np.asarray(self.probabilities(logits))
        theirs = np.asarray(model(images, training=False))
        err = float(np.max(np.abs(ours - theirs)))
        if err > atol:
            raise RuntimeError(f"rebuilt Grad-CAM graph disagrees with the model by {err:.2e}; "
                               "the model is not a linear chain of layers around its backbone")
        return err


def _chain(model: keras.Model) -> list[keras.layers.Layer]:
    """The outer model's layers in order, without the input layer."""
    return [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]


def build_cam_graph(model: keras.Model, layer: str | None = None) -> CamGraph:
    """Rebuild ``model`` as a :class:`CamGraph` targeting ``layer`` (auto when None)."""
    name = find_target_layer(model, layer)
    backbone = _find_backbone(model)
    chain = _chain(model)
    if backbone is not None:
        at = chain.index(backbone)
        pre, post = chain[:at], chain[at + 1:]
        target = backbone.get_layer(name)
        inner = keras.Model(backbone.input, [target.output, backbone.output], name="cam_inner")
    else:  # a flat model: the target layer lives in the outer graph itself
        pre, post = [], [chain[-1]]
        inner = keras.Model(model.input, [model.get_layer(name).output, chain[-1].input],
                            name="cam_inner")
    classifier = post[-1]
    split = (isinstance(classifier, keras.layers.Dense)
             and classifier.activation is keras.activations.softmax)
    shape = tuple(int(d) if d is not None else 0 for d in inner.outputs[0].shape[1:3])
    log.info("Grad-CAM target layer %r (%s feature map)", name, "x".join(map(str, shape)))
    return CamGraph(pre, inner, post[:-1], classifier, split, name, shape)  # type: ignore[arg-type]
