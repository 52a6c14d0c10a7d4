"""One epoch of training, two ways: one compiled ``lax.scan``, or a Python loop of steps.

Both call the same pure step on the same batches (the rows of
:func:`funcnn.data.batch_indices`), so they give the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import numpy as np

from funcnn.train.state import TrainState
from funcnn.train.step import StepMetrics

Step = Callable[[TrainState, jax.Array, jax.Array], tuple[TrainState, StepMetrics]]


def make_scan_epoch(
    step: Step,
) -> Callable[[TrainState, jax.Array, jax.Array, jax.Array], tuple[TrainState, StepMetrics]]:
    """A jitted epoch: ``lax.scan`` of ``step`` over the rows of a batch-index array.

    The whole data set stays on the device; each scan iteration gathers its
    batch by index, so the epoch is a single XLA call.

    Args:
      step: the pure training step (:func:`funcnn.train.build_train_step`).

    Returns:
      ``epoch(state, images, labels, batch_idx) -> (state, metrics)`` where
      ``batch_idx`` has shape ``(steps, batch_size)`` and ``metrics`` holds one
      loss and accuracy per step. The incoming state's buffers are donated.
    """

    def epoch(
        state: TrainState, images: jax.Array, labels: jax.Array, batch_idx: jax.Array
    ) -> tuple[TrainState, StepMetrics]:
        return jax.lax.scan(lambda s, idx: step(s, images[idx], labels[idx]), state, batch_idx)

    return jax.jit(epoch, donate_argnums=0)


def run_loop_epoch(
    step: Step,
    state: TrainState,
    images: np.ndarray,
    labels: np.ndarray,
    batch_idx: np.ndarray,
    on_step: Callable[[int, StepMetrics], None] | None = None,
) -> tuple[TrainState, StepMetrics]:
    """An epoch as a Python loop, one jitted ``step`` call per batch.

    Batches are gathered on the host and copied to the device one at a time,
    for data sets that do not fit in device memory.

    Args:
      step: the jitted training step (:func:`funcnn.train.make_train_step`).
      state: the state before the epoch (donated to the first step).
      images: all training images, on the host.
      labels: their labels.
      batch_idx: ``(steps, batch_size)`` example indices.
      on_step: called as ``on_step(i, metrics)`` after step ``i`` (from 0);
        it may raise to stop the epoch.

    Returns:
      ``(state, metrics)`` with metrics stacked along the steps, as the scan returns them.
    """
    history = []
    for i, idx in enumerate(batch_idx):
        state, metrics = step(state, images[idx], labels[idx])
        history.append(metrics)
        if on_step is not None:
            on_step(i, metrics)
    return state, jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *history)
