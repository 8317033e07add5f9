"""Device strategy: ``tf.distribute.MirroredStrategy`` when more than one GPU is visible (one
replica per GPU on one instance, gradients all-reduced), else the default strategy.
Array-job shards (``AWS_BATCH_JOB_ARRAY_INDEX``) live in :mod:`headstart.shared.data.sharding`."""
from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

def get_strategy() -> Any:
    """Return the ``tf.distribute.Strategy`` to build and train under, and log which."""
    import tensorflow as tf  # lazily: the CLI must start without TensorFlow

    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        strategy = tf.distribute.MirroredStrategy([g.name for g in gpus])
        log.info("distribution: MirroredStrategy over %d GPUs (%s); scale the global batch size "
                 "with the replica count", len(gpus), ", ".join(g.name for g in gpus))
        return strategy
    strategy = tf.distribute.get_strategy()
    log.info("distribution: default strategy on one device (%s)", gpus[0].name if gpus else "CPU")
    return strategy
