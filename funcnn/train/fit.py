"""``fit``: epochs of training with evaluation, checkpoints, metrics and a progress bar.

Each epoch visits the examples in the order of
:func:`funcnn.data.batch_indices` ``(seed, epoch, ...)`` and each step draws
its randomness from ``fold_in(key, step)``, so a run resumed from the
checkpoint of epoch ``e`` continues exactly as the uninterrupted run would.
"""

from __future__ import annotations

import functools
import json
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np
import optax
from tqdm.auto import tqdm

from funcnn import checkpoint, checks
from funcnn.core import Layer
from funcnn.data.batching import batch_indices, scale_images
from funcnn.train.epoch import make_scan_epoch, progress_chunks, run_loop_epoch
from funcnn.train.evaluate import evaluate
from funcnn.train.metrics import plot_curves, write_jsonl
from funcnn.train.state import TrainState, abstract_train_state, init_train_state, model_output_shape
from funcnn.train.step import DEFAULT_LOSS, Augment, Loss, Preprocess, StepMetrics, build_train_step

MODES = ("auto", "scan", "loop")
"""``scan``: each epoch one compiled program over device-resident data;
``loop``: one jitted call per step; ``auto``: scan when the data fits in device memory."""


DIVERGENCE_BOUND = 1e6
"""A training loss above this counts as diverged, like a NaN or infinite one. A
cross-entropy starts near ``log(classes)`` (2.3 for 10 classes); a run whose loss
passes a million is not coming back (a learning rate of 1e6 with Adam reaches 1e30)."""


class NonFiniteLossError(FloatingPointError):
    """Training diverged: a NaN or infinite loss, a loss above :data:`DIVERGENCE_BOUND`, or
    non-finite parameters or optimiser state; the message names the epoch and step."""


class FitResult(NamedTuple):
    """What :func:`fit` returns.

    Attributes:
      state: the final training state.
      history: one metrics record per epoch, as written to ``metrics.jsonl``.
    """

    state: TrainState
    history: list[dict[str, Any]]


def fit(
    model: Layer,
    train_data: tuple[np.ndarray, np.ndarray],
    test_data: tuple[np.ndarray, np.ndarray] | None = None,
    *,
    optimizer: optax.GradientTransformation,
    epochs: int,
    batch_size: int,
    loss: Loss = DEFAULT_LOSS,
    seed: int = 0,
    mode: str = "auto",
    preprocess: Preprocess = scale_images,
    augment: Augment | None = None,
    precision: str = "fp32",
    out: str | os.PathLike | None = None,
    resume: bool = False,
    keep: int = checkpoint.DEFAULT_KEEP,
    config: dict[str, Any] | None = None,
    eval_batch_size: int = 1000,
    progress: bool = False,
) -> FitResult:
    """Train ``model`` for ``epochs`` epochs, evaluating on ``test_data`` after each.

    With ``out``, every epoch appends a record to ``OUT/metrics.jsonl``
    (``epoch``, ``step``, ``train_loss``, ``train_accuracy``, ``test_loss``,
    ``test_accuracy``, ``seconds``, ``images_per_second``, ``devices``,
    ``mode``), redraws ``OUT/curves.png`` and saves a checkpoint under
    ``OUT/checkpoints/`` (the last ``keep`` kept).

    The compiled epoch (or step) is cached per model, loss, optimiser,
    preprocess, augment, precision and mode objects, so calling ``fit`` again
    with the same objects (e.g. to resume in the same process) does not
    recompile.

    Args:
      model: the layer to train; its output is the logits.
      train_data: ``(images, labels)`` on the host, e.g. ``uint8`` images.
      test_data: ``(images, labels)`` to evaluate after every epoch, or ``None``.
      optimizer: an optax optimiser.
      epochs: the total number of epochs (including those before a resume).
      batch_size: examples per step; each epoch drops its incomplete last batch.
      loss: per-example ``loss(logits, labels)``.
      seed: seeds the initialisation, the shuffling and the step keys.
      mode: ``"scan"``, ``"loop"`` or ``"auto"`` (see :data:`MODES`); both
        give the same numbers.
      preprocess: maps a raw batch to model inputs, inside ``jit``.
      augment: ``augment(key, inputs)`` applied in training, or ``None``.
      precision: ``"fp32"`` or ``"bf16"`` compute; parameters stay float32.
      out: the output folder, or ``None`` to write nothing.
      resume: continue from the latest checkpoint in ``OUT/checkpoints``
        (start afresh when there is none).
      keep: how many checkpoints to keep.
      config: a JSON-serialisable dict stored in every checkpoint (e.g. the
        command-line settings), returned by ``checkpoint.read_metadata``.
      eval_batch_size: examples per evaluation call.
      progress: show a tqdm progress bar and one line per epoch.

    Returns:
      The final state and the per-epoch history.

    Raises:
      NonFiniteLossError: a step's loss was NaN or infinite; no checkpoint
        is written for that epoch, so the last good one stays the latest.
      FileExistsError: ``OUT`` already holds checkpoints and ``resume`` is false.
      ValueError: a bad ``mode``, ``batch_size`` or ``epochs``, or a resume
        with another seed or batch size than the checkpoint's.
      LayerConfigError: images and labels of different lengths, or labels
        outside ``[0, number of model outputs)``.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    model = checks.layer("fit", "argument `model`", model)
    checks.optimizer("fit", optimizer)
    epochs = checks.positive_int("fit", "epochs", epochs)
    batch_size = checks.positive_int("fit", "batch_size", batch_size)
    eval_batch_size = checks.positive_int("fit", "eval_batch_size", eval_batch_size)
    images, labels = checks.labelled_data("fit", "train_data", train_data)
    steps = len(batch_indices(seed, 0, len(images), batch_size))
    input_shape = (-1, *jax.eval_shape(preprocess, images[:1]).shape[1:])
    num_classes = model_output_shape(model, input_shape)[-1]
    checks.label_range("fit", "train_data", labels, num_classes)
    if test_data is not None:
        checks.label_range(
            "fit", "test_data", checks.labelled_data("fit", "test_data", test_data)[1], num_classes
        )
    state, history = None, []
    out = None if out is None else Path(out)
    if out is not None:
        target = abstract_train_state(model, optimizer, input_shape)
        state, history = _resume(out, target, resume=resume, seed=seed, batch_size=batch_size)
        if history or (out / "metrics.jsonl").exists():  # drop records past the restored epoch
            write_jsonl(out / "metrics.jsonl", history)
        if config is not None:
            _record_run(out, config)
    if state is None:
        state = init_train_state(model, optimizer, jax.random.key(seed), input_shape)
    device = jax.devices()[0]
    state = jax.device_put(state, device)  # committed, as every step's output is: one compilation
    if mode == "auto":
        mode = "scan" if _fits_on_device(images.nbytes + labels.nbytes, device) else "loop"
    compiled = _compiled_epoch_or_step(model, loss, optimizer, preprocess, augment, precision, mode)
    if mode == "scan":
        run_epoch = _scan_runner(compiled, images, labels, device)
    else:
        run_epoch = _loop_runner(compiled, images, labels)
    bar = tqdm(
        total=epochs * steps,
        initial=len(history) * steps,
        unit="step",
        disable=not progress,
        dynamic_ncols=True,
    )
    with bar:
        for epoch in range(len(history), epochs):
            start = time.perf_counter()
            state, metrics = run_epoch(state, batch_indices(seed, epoch, len(images), batch_size), epoch, bar)
            images_per_second = steps * batch_size / (time.perf_counter() - start)
            test = {"loss": None, "accuracy": None}
            if test_data is not None:
                test = evaluate(
                    model, state.params, state.model_state, *test_data,
                    batch_size=eval_batch_size, loss=loss, preprocess=preprocess, precision=precision,
                )  # fmt: skip
            record = {
                "epoch": epoch + 1,
                "step": int(state.step),
                "train_loss": float(np.mean(metrics.loss)),
                "train_accuracy": float(np.mean(metrics.accuracy)),
                "test_loss": test["loss"],
                "test_accuracy": test["accuracy"],
                "seconds": time.perf_counter() - start,
                "images_per_second": images_per_second,
                "devices": 1,  # fit trains on one device; funcnn.distributed is future work
                "mode": mode,
            }
            history.append(record)
            if out is not None:
                meta = {"epoch": epoch + 1, "seed": seed, "batch_size": batch_size, "config": config}
                _write_epoch(out, state, history, meta, keep)
            if progress:
                bar.write(_summary_line(record, epochs))
    return FitResult(state, history)


RUN_FILE = "run.json"
"""``OUT/run.json``: the ``config`` of the run in ``OUT``, written before its first step, so a
run extended to more epochs and killed before its next checkpoint resumes the extension."""


def _record_run(out: Path, config: dict[str, Any]) -> None:
    """Write ``OUT/run.json`` atomically (a temporary file, then a rename)."""
    out.mkdir(parents=True, exist_ok=True)
    temporary = out / f"{RUN_FILE}.tmp"
    temporary.write_text(json.dumps(config, indent=1))
    os.replace(temporary, out / RUN_FILE)


def _write_epoch(
    out: Path, state: TrainState, history: list[dict[str, Any]], meta: dict[str, Any], keep: int
) -> None:
    """Checkpoint the state (with the history in its metadata), then rewrite the metrics and curves.

    A state with non-finite values is a diverged run: it is never saved.
    """
    bad = checkpoint.non_finite_paths(state)
    if bad:
        raise NonFiniteLossError(
            f"training diverged in epoch {meta['epoch']}: non-finite values in {', '.join(bad[:3])}; "
            "no checkpoint was written for this epoch"
        )
    out.mkdir(parents=True, exist_ok=True)
    checkpoint.save(out / "checkpoints", int(state.step), state, {**meta, "history": history}, keep=keep)
    write_jsonl(out / "metrics.jsonl", history)
    model_name = (meta.get("config") or {}).get("model", "model")
    plot_curves(out / "curves.png", history, f"{model_name}: {out}")


def _resume(
    out: Path, target: TrainState, *, resume: bool, seed: int, batch_size: int
) -> tuple[TrainState | None, list[dict[str, Any]]]:
    """The newest intact checkpoint's state and history when resuming; ``(None, [])`` when there is none.

    Damaged steps newer than it are reported (a :class:`funcnn.checkpoint.DamagedCheckpointWarning`
    each) and moved aside, never deleted, before training continues past them.

    Raises:
      CheckpointDamagedError: there are checkpoints but none is intact.
    """
    directory = out / "checkpoints"
    latest = checkpoint.latest_step(directory)
    if latest is None:
        return None, []
    if not resume:
        raise FileExistsError(
            f"{directory} already holds checkpoints (latest step {latest}); "
            "resume (--resume) to continue that run, or choose another output folder"
        )
    intact, damaged = checkpoint.latest_intact_step(directory)
    if intact is None:
        raise checkpoint.CheckpointDamagedError(
            f"{directory}: no intact checkpoint to resume from: "
            + "; ".join(f"step {step}: {problem}" for step, problem in damaged)
        )
    for step, problem in damaged:
        moved = checkpoint.move_aside(directory, step)
        warnings.warn(
            f"checkpoint step {step} is damaged ({problem}); moved it to {moved} and resuming from "
            f"step {intact}",
            checkpoint.DamagedCheckpointWarning,
            stacklevel=3,
        )
    state, meta = checkpoint.restore(directory, target, intact)
    for name, value in (("seed", seed), ("batch_size", batch_size)):
        if meta[name] != value:
            raise ValueError(
                f"{directory}: cannot resume with {name} {value}: the checkpoint used {meta[name]}"
            )
    return state, meta["history"]


@functools.lru_cache(maxsize=8)
def _compiled_epoch_or_step(
    model: Layer,
    loss: Loss,
    optimizer: optax.GradientTransformation,
    preprocess: Preprocess,
    augment: Augment | None,
    precision: str,
    mode: str,
) -> Callable:
    """The jitted scanned epoch (``mode="scan"``) or step, cached so that repeated
    ``fit`` calls with the same objects (a resume in the same process) compile once."""
    step = build_train_step(
        model, loss, optimizer, preprocess=preprocess, augment=augment, precision=precision
    )
    return make_scan_epoch(step) if mode == "scan" else jax.jit(step, donate_argnums=0)


def _scan_runner(
    scan_epoch: Callable, images: np.ndarray, labels: np.ndarray, device: jax.Device
) -> Callable:
    """``run(state, batch_idx, epoch, bar)`` running each epoch as a few scans over on-device data.

    The epoch's steps run in :func:`funcnn.train.epoch.progress_chunks` (about ten
    compiled scans of one or two lengths), so the progress bar moves within the
    epoch and a divergence stops the epoch early; the steps and their order are
    those of one scan, so the numbers are too.
    """
    images, labels = jax.device_put(images, device), jax.device_put(labels, device)

    def run(
        state: TrainState, batch_idx: np.ndarray, epoch: int, bar: tqdm
    ) -> tuple[TrainState, StepMetrics]:
        parts: list[tuple[slice, StepMetrics]] = []

        def report(chunk: slice, metrics: StepMetrics) -> None:
            metrics = jax.tree.map(np.asarray, metrics)  # waits for this chunk only
            _check_diverged(metrics.loss, epoch, chunk.start)
            parts[-1] = (chunk, metrics)
            bar.update(chunk.stop - chunk.start)
            bar.set_postfix(_postfix(metrics, batch_idx.shape[1], bar), refresh=True)

        for chunk in progress_chunks(len(batch_idx)):
            state, metrics = scan_epoch(state, images, labels, jax.device_put(batch_idx[chunk], device))
            if parts:  # report the previous chunk while this one runs: the device never waits
                report(*parts[-1])
            parts.append((chunk, metrics))
        report(*parts[-1])
        return state, jax.tree.map(lambda *xs: np.concatenate(xs), *(m for _, m in parts))

    return run


def _loop_runner(step: Callable, images: np.ndarray, labels: np.ndarray) -> Callable:
    """``run(state, batch_idx, epoch, bar)`` running each epoch as one jitted call per step."""

    def run(
        state: TrainState, batch_idx: np.ndarray, epoch: int, bar: tqdm
    ) -> tuple[TrainState, StepMetrics]:
        def on_step(i: int, metrics: StepMetrics) -> None:
            _check_diverged(np.asarray(metrics.loss)[None], epoch, i)
            bar.update(1)
            bar.set_postfix(_postfix(metrics, batch_idx.shape[1], bar), refresh=False)

        return run_loop_epoch(step, state, images, labels, batch_idx, on_step)

    return run


def _postfix(metrics: StepMetrics, batch_size: int, bar: tqdm) -> dict[str, str]:
    """Progress-bar fields: loss and accuracy of the latest step(s), images per second."""
    rate = bar.format_dict.get("rate") or 0.0
    return {
        "loss": f"{float(np.mean(metrics.loss)):.4f}",
        "acc": f"{float(np.mean(metrics.accuracy)):.4f}",
        "img/s": f"{rate * batch_size:.0f}",
    }


def _check_diverged(losses: np.ndarray, epoch: int, first_step: int) -> None:
    """Raise :class:`NonFiniteLossError` naming the first step whose loss is not finite or
    exceeds :data:`DIVERGENCE_BOUND`."""
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


def _summary_line(record: dict[str, Any], epochs: int) -> str:
    """One line per epoch for the log."""
    line = (
        f"epoch {record['epoch']}/{epochs}: train loss {record['train_loss']:.4f} "
        f"acc {record['train_accuracy']:.4f}"
    )
    if record["test_accuracy"] is not None:
        line += f", test loss {record['test_loss']:.4f} acc {record['test_accuracy']:.4f}"
    return line + f", {record['seconds']:.1f} s, {record['images_per_second']:.0f} img/s"


def _fits_on_device(nbytes: int, device: jax.Device) -> bool:
    """Whether ``nbytes`` of data fit comfortably (in a quarter of the free memory) on ``device``."""
    stats = device.memory_stats() or {}
    if "bytes_limit" in stats:
        free = stats["bytes_limit"] - stats.get("bytes_in_use", 0)
    else:
        free = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return nbytes <= free // 4
