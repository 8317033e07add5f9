"""Device strategy: all visible GPUs of one instance, or the default single device."""
from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def get_strategy():
    """``MirroredStrategy`` when more than one GPU is visible, else the default strategy."""
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        log.info("training on %d GPUs with MirroredStrategy", len(gpus))
        return tf.distribute.MirroredStrategy()
    log.info("training on one device (%s)", gpus[0].name if gpus else "CPU")
    return tf.distribute.get_strategy()
