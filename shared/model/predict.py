"""Batched prediction over decoded splits, with progress."""
from __future__ import annotations

import logging

import keras
import numpy as np

from headstart.shared.runtime.logs import Progress
from headstart.shared.runtime.stop import STOP

log = logging.getLogger(__name__)


def predict_arrays(model: keras.Model, data: np.ndarray, batch_size: int = 64,
                   desc: str = "predict") -> np.ndarray:
    """Probabilities for ``data`` (images or feature maps), batch by batch."""
    from headstart.shared.model.features import compiled_call

    fn = compiled_call(model)
    progress = Progress(len(data), desc, "img", log)
    out = []
    for start in range(0, len(data), batch_size):
        STOP.check()
        batch = np.asarray(data[start:start + batch_size], dtype=np.float32)
        out.append(np.asarray(fn(batch)))
        progress.update(len(batch))
    progress.close()
    n_out = int(model.output.shape[-1])
    return np.concatenate(out) if out else np.zeros((0, n_out), dtype=np.float32)
