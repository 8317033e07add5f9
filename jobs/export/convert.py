"""Model conversion: SavedModel, TFLite (float32 / float16; int8 in int8.py) and ONNX, builtin ops only.

Every format is converted from one SavedModel whose ``serve`` signature takes float RGB
images of any size, ``(None, None, None, 3)`` 0-255, exactly what ``model.keras`` takes.
"""
from __future__ import annotations

import importlib
import logging
import os
from typing import Any, Callable

import numpy as np

from headstart.shared.runtime.errors import UserError

log = logging.getLogger("headstart.export")

# optional converter modules -> the extra that installs them
EXTRAS = {"tf2onnx": "onnx", "onnxruntime": "onnx", "onnx": "onnx"}


def require(module: str) -> Any:
    """Import an optional converter or raise a :class:`UserError` naming its extra (exit 2)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        extra = EXTRAS.get(module, module)
        raise UserError(f"--format {extra} needs the optional package {module!r}, which is not "
                        f"installed: pip install 'headstart[{extra}]'") from None


def portable(model):
    """``(model, replaced)``: the model with any antialiased ``Resizing`` swapped for the plain
    bilinear one, which TFLite and ONNX have as builtins (``tf.ScaleAndTranslate`` is neither).

    The swap shares every other layer (and its weights). It changes nothing for images already
    at the model's input size (both resizes are the identity there); for other sizes it drops
    the antialiasing. Models whose resize is already builtin come back unchanged.
    """
    import keras

    replaced = []

    def swap(layer):
        if isinstance(layer, keras.layers.Resizing) and layer.get_config().get("antialias"):
            cfg = layer.get_config()
            cfg["antialias"] = False
            replaced.append(layer.name)
            return keras.layers.Resizing.from_config(cfg)
        return layer

    clone = keras.models.clone_model(model, clone_function=swap)
    if not replaced:
        return model, False
    log.warning("the model's antialiased resize (%s) is not a TFLite/ONNX builtin: exporting "
                "with the plain bilinear resize (identical at %s px inputs)", ", ".join(replaced),
                model.get_layer(replaced[0]).get_config().get("height"))
    return clone, True


def saved_model(model, directory: str) -> str:
    """Write a SavedModel with a ``serve`` signature over float images of any size."""
    import tensorflow as tf

    spec = tf.TensorSpec((None, None, None, 3), tf.float32, name="image")
    model.export(directory, format="tf_saved_model", input_signature=[spec], verbose=False)
    return directory


def tflite(saved_dir: str, quantize: str) -> bytes:
    """Convert with TFLite builtin ops only (float32, or float16 weights); float32 input and
    output for the caller. ``int8`` is :mod:`headstart.jobs.export.int8` (selective, checked)."""
    import tensorflow as tf

    if quantize not in ("none", "float16"):
        raise ValueError(f"convert.tflite does {quantize!r} through jobs.export.int8")
    conv = tf.lite.TFLiteConverter.from_saved_model(saved_dir)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize == "float16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    try:
        return conv.convert()
    except Exception as exc:  # the converter raises bare Exceptions (ConverterError) with op lists
        raise UserError(f"TFLite conversion with builtin ops failed: {str(exc).strip()[-500:]}") from None


def onnx(saved_dir: str, opset: int = 17) -> bytes:
    """Convert the SavedModel's ``serve`` function with tf2onnx."""
    import tensorflow as tf

    tf2onnx = require("tf2onnx")
    loaded = tf.saved_model.load(saved_dir)
    spec = [tf.TensorSpec((None, None, None, 3), tf.float32, name="image")]
    proto, _ = tf2onnx.convert.from_function(tf.function(loaded.serve), input_signature=spec,
                                             opset=opset)
    return proto.SerializeToString()


def runner(fmt: str, path: str) -> Callable[[np.ndarray], np.ndarray]:
    """``images -> probabilities`` for an exported file or folder, with that format's runtime."""
    if fmt == "savedmodel":
        import tensorflow as tf

        loaded = tf.saved_model.load(path)  # held by the closure: its variables must stay alive
        return lambda x: np.asarray(loaded.serve(tf.convert_to_tensor(x, tf.float32)))
    if fmt == "onnx":
        ort = require("onnxruntime")
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        return lambda x: sess.run(None, {name: np.asarray(x, np.float32)})[0]
    return _tflite_runner(path)


def _tflite_runner(path: str) -> Callable[[np.ndarray], np.ndarray]:
    import warnings

    import tensorflow as tf

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice
        interp = tf.lite.Interpreter(model_path=path, num_threads=max(1, len(os.sched_getaffinity(0))))
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    shape: list[list[int] | None] = [None]

    def run(x: np.ndarray) -> np.ndarray:
        if list(x.shape) != shape[0]:
            interp.resize_tensor_input(inp["index"], list(x.shape))
            interp.allocate_tensors()
            shape[0] = list(x.shape)
        interp.set_tensor(inp["index"], np.asarray(x, np.float32))
        interp.invoke()
        return np.array(interp.get_tensor(out["index"]))
    return run


def file_size(path: str) -> int:
    """Bytes of a file, or of every file under a folder."""
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)
