"""The training loop, pure: state and data in, state and per-epoch records out.

No files and no printing: progress goes to an ``on_progress(steps, metrics)``
callback, and ``train_epochs`` yields each epoch's state and record for
the caller (``funcnn.train.run``) to checkpoint, write and show.

Each epoch visits the examples in the order of
[`funcnn.data.batch_indices`][funcnn.data.batch_indices] ``(seed, epoch, ...)`` and each step draws
its randomness from ``fold_in(key, step)``, so a run resumed from the
checkpoint of epoch ``e`` continues exactly as the uninterrupted run would.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import jax
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from funcnn import checks, distributed
from funcnn.core import Layer, LayerConfigError
from funcnn.train.epoch import Step, make_scan_epoch, progress_chunks, run_loop_epoch
from funcnn.train.state import TrainState
from funcnn.train.step import Augment, Loss, Preprocess, StepMetrics, build_train_step

MODES = ("auto", "scan", "loop")
"""``scan``: each epoch compiled scans over device-resident data;
``loop``: one jitted call per step; ``auto``: scan when the data fits in device memory."""

DIVERGENCE_BOUND = 1e6
"""A training loss above this counts as diverged, like a NaN or infinite one. A
cross-entropy starts near ``log(classes)`` (2.3 for 10 classes); a run whose loss
passes a million is not coming back (a learning rate of 1e6 with Adam reaches 1e30)."""

Progress = Callable[[int, StepMetrics], None]
"""``on_progress(steps, metrics)``: ``steps`` more steps ran, ``metrics`` the latest ones."""

RunEpoch = Callable[[TrainState, np.ndarray, int, Progress], tuple[TrainState, StepMetrics]]
"""``run_epoch(state, batch_idx, epoch, on_progress) -> (state, metrics)``."""


class NonFiniteLossError(FloatingPointError):
    """Training diverged: a NaN or infinite loss, a loss above ``DIVERGENCE_BOUND``, or
    non-finite parameters or optimiser state; the message names the epoch and step."""


def choose_mode(mode: str, nbytes: int, device: jax.Device) -> str:
    """``mode``, with ``"auto"`` resolved: ``"scan"`` when ``nbytes`` of data fit comfortably
    (in a quarter of the free memory) on ``device``, else ``"loop"``."""
    if mode != "auto":
        return mode
    stats = device.memory_stats() or {}
    if "bytes_limit" in stats:
        free = stats["bytes_limit"] - stats.get("bytes_in_use", 0)
    else:
        free = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return "scan" if nbytes <= free // 4 else "loop"


def sharded_step(step: Step, mesh: Mesh, shard_params: bool) -> Step:
    """``step`` with its batch split along the mesh's data axis and its state placed by
    [`funcnn.distributed.state_shardings`][funcnn.distributed.state_shardings], inside ``jit``: XLA's
    partitioner runs the step data-parallel (each device its rows, the gradients all-reduced) and the state
    keeps one placement from step to step. The metrics come back replicated."""

    def run(state: Any, images: jax.Array, labels: jax.Array) -> tuple[Any, StepMetrics]:
        batch = jax.lax.with_sharding_constraint((images, labels), distributed.batch_sharding(mesh))
        state, metrics = step(state, *batch)
        state = jax.lax.with_sharding_constraint(
            state, distributed.state_shardings(mesh, state, shard_params)
        )
        return state, jax.lax.with_sharding_constraint(metrics, distributed.replicated(mesh))

    return run


@functools.lru_cache(maxsize=8)
def compiled_epoch_or_step(
    model: Layer,
    loss: Loss,
    optimizer: optax.GradientTransformation,
    preprocess: Preprocess,
    augment: Augment | None,
    mode: str,
    mesh: Mesh,
    shard_params: bool = False,
) -> Callable:
    """The jitted scanned epoch (``mode="scan"``) or step, data-parallel over ``mesh``
    (``sharded_step``), cached so that repeated ``fit`` calls with the same objects
    (a resume in the same process) compile once."""
    step = build_train_step(model, loss, optimizer, preprocess=preprocess, augment=augment)
    step = sharded_step(step, mesh, shard_params)
    return make_scan_epoch(step) if mode == "scan" else jax.jit(step, donate_argnums=0)


def epoch_runner(
    compiled: Callable, images: np.ndarray, labels: np.ndarray, mode: str, mesh: Mesh
) -> RunEpoch:
    """The ``RunEpoch`` for ``mode``, data-parallel over ``mesh``.

    ``scan``: the epoch's steps run in ``funcnn.train.epoch.progress_chunks``
    (about ten compiled scans of one or two lengths) over data put on every
    device of ``mesh`` once, each device gathering its rows of each batch
    (the batch indices are split along the data axis), so progress shows within the
    epoch and a divergence stops it early; each chunk is reported while the next
    one runs, and the steps and their order are those of one scan, so the numbers
    are too. ``loop``: one jitted call per step, each process gathering only its
    rows of each global batch on the host ([`funcnn.distributed.local_rows`][funcnn.distributed.local_rows]).
    """
    if mode != "scan":

        def run_loop(
            state: TrainState, batch_idx: np.ndarray, epoch: int, on_progress: Progress
        ) -> tuple[TrainState, StepMetrics]:
            def on_step(i: int, metrics: StepMetrics) -> None:
                check_diverged(np.asarray(metrics.loss)[None], epoch, i)
                on_progress(1, metrics)

            local = batch_idx[:, distributed.local_rows(mesh, batch_idx.shape[1])]
            place = functools.partial(distributed.shard_batch, mesh)
            return run_loop_epoch(compiled, state, images, labels, local, on_step, place)

        return run_loop

    on_device = distributed.replicate(mesh, (images, labels))
    index_sharding = NamedSharding(mesh, PartitionSpec(None, distributed.DATA_AXIS))

    def run_scan(
        state: TrainState, batch_idx: np.ndarray, epoch: int, on_progress: Progress
    ) -> tuple[TrainState, StepMetrics]:
        parts: list[tuple[slice, StepMetrics]] = []

        def report(chunk: slice, metrics: StepMetrics) -> None:
            metrics = jax.tree.map(np.asarray, metrics)  # waits for this chunk only
            check_diverged(metrics.loss, epoch, chunk.start)
            parts[-1] = (chunk, metrics)
            on_progress(chunk.stop - chunk.start, metrics)

        for chunk in progress_chunks(len(batch_idx)):
            state, metrics = compiled(state, *on_device, jax.device_put(batch_idx[chunk], index_sharding))
            if parts:  # report the previous chunk while this one runs: the device never waits
                report(*parts[-1])
            parts.append((chunk, metrics))
        report(*parts[-1])
        return state, jax.tree.map(lambda *xs: np.concatenate(xs), *(m for _, m in parts))

    return run_scan


def batches_runner(compiled_step: Callable, batches: Iterable, num_classes: int, mesh: Mesh) -> RunEpoch:
    """The ``RunEpoch`` for a re-iterable of ``(images, labels)`` batches (grain, tf.data, a list):
    one jitted call per batch, each epoch iterating ``batches`` afresh; every batch is checked
    on the host (a pair of arrays, labels in ``[0, num_classes)``) before its step runs, then
    split over ``mesh`` (with several processes, each process's batches are its rows of the
    global batch)."""

    def run_batches(
        state: TrainState, plan: Any, epoch: int, on_progress: Progress
    ) -> tuple[TrainState, StepMetrics]:
        history = []
        for i, batch in enumerate(batches):
            images, labels = checks.labelled_data("fit", f"train_data batch {i}", batch)
            checks.label_range("fit", f"train_data batch {i}", labels, num_classes)
            devices = mesh.shape[distributed.DATA_AXIS]
            if (len(images) * jax.process_count()) % devices:
                raise LayerConfigError(
                    f"fit: argument `train_data` batch {i} has {len(images)} rows per process, which do not "
                    f"divide over the {devices} devices of the mesh; drop or pad the incomplete batch"
                )
            state, metrics = compiled_step(state, *distributed.shard_batch(mesh, (images, labels)))
            check_diverged(np.asarray(metrics.loss)[None], epoch, i)
            on_progress(1, metrics)
            history.append(metrics)
        if not history:
            raise LayerConfigError(
                f"fit: argument `train_data` yielded no batches in epoch {epoch + 1}; pass a re-iterable "
                "(a list, or an object whose __iter__ starts over), not a one-shot iterator"
            )
        return state, jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *history)

    return run_batches


def check_diverged(losses: np.ndarray, epoch: int, first_step: int) -> None:
    """Raise [`NonFiniteLossError`][funcnn.train.loop.NonFiniteLossError] naming the first step whose loss is
    not finite or
    exceeds ``DIVERGENCE_BOUND``."""
    losses = np.asarray(losses)
    bad = np.flatnonzero(~(np.isfinite(losses) & (losses <= DIVERGENCE_BOUND)))
    if bad.size:
        value = float(losses[bad[0]])
        raise NonFiniteLossError(
            f"training diverged: loss {value:.4g} (bound {DIVERGENCE_BOUND:g}) at epoch {epoch + 1}, "
            f"step {first_step + bad[0] + 1} "
            "(steps count from 1 in each epoch); "
            "training stopped and no checkpoint was written for this epoch"
        )


def train_epochs(
    run_epoch: RunEpoch,
    state: TrainState,
    *,
    first_epoch: int,
    epochs: int,
    plan: Callable[[int], Any],
    batch_size: int,
    evaluate_test: Callable[[TrainState], dict[str, float | None]],
    on_progress: Progress,
    mode: str,
    devices: int = 1,
) -> Iterator[tuple[TrainState, dict[str, Any]]]:
    """Train epochs ``first_epoch + 1 ... epochs``; yield each epoch's state and record.

    ``plan(epoch)`` is what ``run_epoch`` takes for that epoch: its batch
    indices ([`funcnn.data.batch_indices`][funcnn.data.batch_indices]), or ``None`` for a batch iterable.
    The record holds ``epoch``, ``step``, ``train_loss``, ``train_accuracy``,
    ``test_loss``, ``test_accuracy`` (from ``evaluate_test``), ``seconds``,
    ``images_per_second``, ``devices`` (the count the run is split over) and ``mode``.
    """
    for epoch in range(first_epoch, epochs):
        start = time.perf_counter()
        state, metrics = run_epoch(state, plan(epoch), epoch, on_progress)
        images_per_second = len(metrics.loss) * batch_size / (time.perf_counter() - start)
        test = evaluate_test(state)
        yield (
            state,
            {
                "epoch": epoch + 1,
                "step": int(state.step),
                "train_loss": float(np.mean(metrics.loss)),
                "train_accuracy": float(np.mean(metrics.accuracy)),
                "test_loss": test["loss"],
                "test_accuracy": test["accuracy"],
                "seconds": time.perf_counter() - start,
                "images_per_second": images_per_second,
                "devices": devices,
                "mode": mode,
            },
        )
