"""Scale-out helpers: the TensorFlow distribution strategy and AWS Batch array shards.

* :func:`get_strategy`: ``tf.distribute.MirroredStrategy`` when more than one GPU is visible
  (one replica per GPU on one instance, gradients all-reduced), else the default strategy.
* :func:`batch_array_shard`: the ``(index, count)`` shard of an AWS Batch array child, from
  ``AWS_BATCH_JOB_ARRAY_INDEX`` (set by Batch) and ``HEADSTART_SHARD_COUNT`` (set by the
  pipeline next to the array size, since Batch does not tell children the array size).
"""
from __future__ import annotations

import logging
import os
from typing import Any, Mapping

from shared.errors import UserError

log = logging.getLogger(__name__)

ARRAY_INDEX_ENV = "AWS_BATCH_JOB_ARRAY_INDEX"
SHARD_COUNT_ENV = "HEADSTART_SHARD_COUNT"


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


def batch_array_shard(env: Mapping[str, str] | None = None) -> tuple[int, int] | None:
    """``(index, count)`` when running as an AWS Batch array child, else None.

    Raises :class:`UserError` when the index is set but the count is missing or inconsistent.
    """
    env = os.environ if env is None else env
    if ARRAY_INDEX_ENV not in env:
        return None
    raw_index, raw_count = env[ARRAY_INDEX_ENV], env.get(SHARD_COUNT_ENV)
    try:
        index, count = int(raw_index), int(raw_count or "")
    except ValueError:
        raise UserError(f"an AWS Batch array child needs integer {ARRAY_INDEX_ENV} and {SHARD_COUNT_ENV}. "
                        f"Received: {ARRAY_INDEX_ENV}={raw_index!r}, {SHARD_COUNT_ENV}={raw_count!r}") from None
    if not 0 <= index < count:
        raise UserError(f"{ARRAY_INDEX_ENV} must be in [0, {SHARD_COUNT_ENV}). "
                        f"Received: {ARRAY_INDEX_ENV}={index}, {SHARD_COUNT_ENV}={count}")
    return index, count
