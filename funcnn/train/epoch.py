"""One epoch of training, two ways: one compiled ``lax.scan``, or a Python loop of steps.

Both call the same pure step on the same batches (the rows of
[`funcnn.data.batch_indices`][funcnn.data.batch_indices]), so they give the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

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
      step: the pure training step ([`funcnn.train.build_train_step`][funcnn.train.build_train_step]).

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
    place: Callable[[tuple[np.ndarray, np.ndarray]], Any] | None = None,
) -> tuple[TrainState, StepMetrics]:
    """An epoch as a Python loop, one jitted ``step`` call per batch.

    Batches are gathered on the host and copied to the device one at a time,
    for data sets that do not fit in device memory.

    Args:
      step: the jitted training step ([`funcnn.train.make_train_step`][funcnn.train.make_train_step]).
      state: the state before the epoch (donated to the first step).
      images: all training images, on the host.
      labels: their labels.
      batch_idx: ``(steps, batch_size)`` example indices.
      on_step: called as ``on_step(i, metrics)`` after step ``i`` (from 0);
        it may raise to stop the epoch.
      place: puts a gathered ``(images, labels)`` batch on the devices (e.g.
        [`funcnn.distributed.shard_batch`][funcnn.distributed.shard_batch]); ``None`` passes the host arrays.

    Returns:
      ``(state, metrics)`` with metrics stacked along the steps, as the scan returns them.
    """
    history = []
    for i, idx in enumerate(batch_idx):
        batch = images[idx], labels[idx]
        state, metrics = step(state, *(batch if place is None else place(batch)))
        history.append(metrics)
        if on_step is not None:
            on_step(i, metrics)
    return state, jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *history)


PROGRESS_CHUNKS = 10
"""About how many compiled scans an epoch runs as, so that its progress shows."""


def progress_chunks(steps: int, chunks: int = PROGRESS_CHUNKS) -> list[slice]:
    """Split ``steps`` steps into about ``chunks`` consecutive runs, each one compiled scan.

    The run length is a divisor of ``steps`` between ``ceil(steps / chunks)``
    and twice that when there is one (one compiled length), else
    ``ceil(steps / chunks)`` with a shorter last run (two compiled lengths).

    Examples:
        >>> [(s.start, s.stop) for s in progress_chunks(468)][:3]
        [(0, 52), (52, 104), (104, 156)]
        >>> progress_chunks(468)[-1]
        slice(416, 468, None)
        >>> len(progress_chunks(7))
        7
    """
    size = max(-(-steps // chunks), 1)
    size = next((d for d in range(size, 2 * size + 1) if steps % d == 0), size)
    return [slice(start, min(start + size, steps)) for start in range(0, steps, size)]
