"""The fast path's feature cache and the batch sequences both training paths fit on.

The base is frozen, so its output for an image never changes: we run it once per image
(once per augmented view) and train the head on the cached feature maps. Maps are kept in
float16 (half the memory, well inside the head's noise) and spill to a memory-mapped file
when large.
"""
from __future__ import annotations

import logging
from typing import Iterable

import keras
import numpy as np

from headstart.shared.data.scratch import allocate
from headstart.shared.model.accelerate import on_gpu
from headstart.shared.runtime.logs import Progress
from headstart.shared.runtime.stop import STOP

log = logging.getLogger(__name__)

# Batches of the frozen pass. A GPU wants big ones. On a CPU the pass is bound by memory
# traffic: batches whose largest activation fits the last-level cache run faster. Measured on
# 2 EPYC cores (32 MiB L3), MobileNetV2@160: 64 -> 103 images/s, 10-12 -> 180 (1.8x);
# ResNet50@224: 64 -> 14.5, 8 -> 17; held out of the choice of budget, MobileNetV2@224 and
# EfficientNetB0@224 (the rule gives 5): 64 -> 31 and 20, 5 -> 58 and 45. A fixed byte
# budget, not this machine's cache size, keeps the batch (and so the bits of the maps and the
# augmented views) the same on any CPU.
EXTRACT_BATCH = 64
CPU_BATCH_BYTES = 24 * 2**20
CPU_MIN_BATCH = 4


def augmenter(seed: int) -> keras.Sequential:
    """Mild, label-preserving augmentation for photos: flip, small rotation, zoom, contrast."""
    return keras.Sequential([
        keras.layers.RandomFlip("horizontal", seed=seed),
        keras.layers.RandomRotation(0.08, fill_mode="reflect", seed=seed + 1),
        keras.layers.RandomZoom(0.12, fill_mode="reflect", seed=seed + 2),
        keras.layers.RandomContrast(0.15, seed=seed + 3),
    ], name="augment")


def largest_activation(model: keras.Model) -> int:
    """Elements of the largest layer output per image, nested models included."""
    largest = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            largest = max(largest, largest_activation(layer))
            continue
        outputs = layer.output if isinstance(layer.output, (list, tuple)) else [layer.output]
        for out in outputs:
            largest = max(largest, int(np.prod([d or 1 for d in out.shape[1:]])))
    return largest


def extract_batch(extractor: keras.Model, batch_size: int = 0) -> int:
    """Images per batch of the frozen pass: on a GPU ``max(batch_size, EXTRACT_BATCH)``; on a
    CPU as many as keep the largest float32 activation within ``CPU_BATCH_BYTES`` (4..64)."""
    if on_gpu():
        return max(batch_size, EXTRACT_BATCH)
    fits = CPU_BATCH_BYTES // max(4 * largest_activation(extractor), 1)
    return int(min(EXTRACT_BATCH, max(CPU_MIN_BATCH, fits)))


def extract_features(extractor: keras.Model, images: np.ndarray, batch_size: int, desc: str,
                     views: int = 1, augment: keras.Sequential | None = None,
                     cache_dir: str | None = None, jit: bool = False) -> np.ndarray:
    """Run the frozen base once per image (and per augmented view).

    Returns float16 maps shaped ``(n, views, h, w, c)``; view 0 is always the plain image.
    ``jit``: XLA-compile the pass (GPU); the last batch is padded so one shape compiles.
    """
    step = extract_batch(extractor, batch_size)
    batches = (np.asarray(images[start:start + step], dtype=np.float32)
               for start in range(0, len(images), step))
    return extract_batches(extractor, batches, len(images), batch_size, desc, views, augment,
                           cache_dir, jit)


def extract_batches(extractor: keras.Model, batches: Iterable[np.ndarray], total: int,
                    batch_size: int, desc: str, views: int = 1,
                    augment: keras.Sequential | None = None, cache_dir: str | None = None,
                    jit: bool = False, memmap: bool = False, pool: bool = False) -> np.ndarray:
    """:func:`extract_features` over image batches as they come (a decoding stream): at most
    ``total`` images; the result is cut to the images that came. Batches of
    ``extract_batch(extractor, batch_size)`` images give exactly the array version's features.
    ``memmap``: the cache goes to a memory-mapped file whatever its size (flat RSS).
    ``pool``: keep only the global average of each map, as float32 ``(n, views, 1, 1, c)``
    (a 1x1 map pools to itself): the same bits as pooling the float16 maps afterwards
    (``selection.pooled``), in h x w times less cache, for heads that start with the pooling."""
    shape = tuple(int(d) for d in extractor.output.shape[1:])
    if pool:
        shape = (1,) * (len(shape) - 1) + shape[-1:]
    feats = allocate((total, views, *shape), np.float32 if pool else np.float16, cache_dir, "features",
                     memmap=memmap)
    batch_size = extract_batch(extractor, batch_size)
    predict = compiled_call(extractor, jit=jit, dtype="float16")
    progress = Progress(total * views, desc, "img", log)
    start = 0
    for batch in batches:
        for v in range(views):
            STOP.check()  # nothing to checkpoint yet: leave promptly on SIGTERM
            x = batch if v == 0 or augment is None else np.asarray(augment(batch, training=True))
            if jit and len(x) < batch_size:  # one compiled shape: pad, then drop the padding
                x = np.concatenate([x, np.zeros((batch_size - len(x), *x.shape[1:]), x.dtype)])
            out = np.asarray(predict(x))[:len(batch)]
            if pool:  # the float16 maps' means in float32, as selection.pooled takes them
                out = out.astype(np.float32).mean(axis=tuple(range(1, out.ndim - 1)), keepdims=True)
            feats[start:start + len(batch), v] = out
            progress.update(len(batch))
        start += len(batch)
    progress.close()
    return feats[:start]


def compiled_call(model: keras.Model, jit: bool = False, dtype: str = "float32"):
    """``model(x, training=False)`` as one graph for any batch size (traced once per model);
    ``jit``: XLA-compiled (one compile per batch shape). ``dtype``: of the result, cast inside
    the graph (float16: the same bits as casting the float32 result, half the copy out)."""
    import tensorflow as tf

    attr = f"_headstart_call_{dtype}" + ("_xla" if jit else "")
    fn = getattr(model, attr, None)
    if fn is None:
        spec = tf.TensorSpec((None, *model.input.shape[1:]), tf.float32)
        fn = tf.function(lambda x: tf.cast(model(x, training=False), dtype), input_signature=[spec],
                         jit_compile=jit)
        setattr(model, attr, fn)  # cached: a new tf.function per call would retrace each time
    return lambda x: fn(tf.convert_to_tensor(x, dtype=tf.float32))


class ArrayBatches(keras.utils.PyDataset):
    """Shuffled (x, y) batches over an array of images or cached feature maps.

    ``data`` is ``(n, ...)`` or, with ``views > 1``, ``(n, views, ...)``: each epoch then
    draws one view per sample. The order depends only on (seed, epoch), so a resumed run
    sees the same batches as an uninterrupted one.
    """

    def __init__(self, data: np.ndarray, labels: np.ndarray, batch_size: int, seed: int,
                 shuffle: bool = True, has_views: bool = False,
                 augment: keras.Sequential | None = None) -> None:
        super().__init__(workers=1, use_multiprocessing=False)
        self.data, self.labels = data, labels
        self.batch_size, self.seed, self.shuffle = batch_size, seed, shuffle
        self.has_views, self.augment = has_views, augment
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        rng = np.random.default_rng([self.seed, epoch])
        n = len(self.labels)
        self.order = rng.permutation(n) if self.shuffle else np.arange(n)
        views = self.data.shape[1] if self.has_views else 1
        self.view = rng.integers(0, views, size=n) if self.shuffle else np.zeros(n, dtype=int)

    def __len__(self) -> int:
        return int(np.ceil(len(self.labels) / self.batch_size))

    def __getitem__(self, i: int):
        idx = self.order[i * self.batch_size:(i + 1) * self.batch_size]
        if self.shuffle and len(idx) < self.batch_size and len(self.order) > self.batch_size:
            # Fill the last training batch from the epoch's start: every batch has one shape,
            # so the train step is traced once (a retrace costs seconds, a step milliseconds).
            idx = np.concatenate([idx, self.order[: self.batch_size - len(idx)]])
        idx = np.sort(idx)  # sorted: memmap-friendly
        x = self.data[idx, self.view[idx]] if self.has_views else self.data[idx]
        x = np.asarray(x, dtype=np.float32)
        if self.augment is not None:
            x = np.asarray(self.augment(x, training=True))
        return x, self.labels[idx]
