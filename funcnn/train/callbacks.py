"""``fit``'s callbacks: what a run does besides training, each a few lines.

A callback subclasses [`Callback`][funcnn.train.callbacks.Callback] and overrides the hooks it needs (any
other object with some of these methods works too, the others doing nothing);
[`funcnn.train.fit`][funcnn.train.fit.fit] calls them in the order given:

- ``on_train_begin(start)`` before the first step; it may return
  ``(state, history)`` to resume from ([`Checkpoints`][funcnn.train.callbacks.Checkpoints] does), and the
  callbacks after it see that in ``start``;
- ``on_steps(steps, metrics)`` as steps finish (``steps`` more, ``metrics`` the latest);
- ``on_epoch_end(state, history)`` after each epoch (its record is ``history[-1]``);
- ``on_train_end(state, history)`` once the last epoch ran;
- ``close(error)`` always, last: ``error`` is ``None``, or what ended training.

Besides [`Checkpoints`][funcnn.train.callbacks.Checkpoints] and
[`ProgressBar`][funcnn.train.callbacks.ProgressBar]: [`EMA`][funcnn.train.callbacks.EMA] (evaluates the moving
average of [`funcnn.train.with_ema`][funcnn.train.with_ema]),
[`EarlyStopping`][funcnn.train.callbacks.EarlyStopping] and
[`TensorBoard`][funcnn.train.callbacks.TensorBoard].
Order matters where one writes what another reads: a callback that adds to the epoch's
record ([`EMA`][funcnn.train.callbacks.EMA]) comes before [`Checkpoints`][funcnn.train.callbacks.Checkpoints],
which saves the record.

An example, stopping when the test accuracy passes a target::

    class StopAt(fn.train.Callback):
        def __init__(self, target):
            self.target = target

        def on_epoch_end(self, state, history):
            if history[-1]["test_accuracy"] >= self.target:
                raise fn.train.StopTraining
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np
from jax.sharding import Mesh
from tqdm.auto import tqdm

from funcnn import checkpoint, checks, distributed
from funcnn.core import Layer, LayerConfigError
from funcnn.data.batching import scale_images
from funcnn.train.ema import EmaState, ema_params
from funcnn.train.evaluate import evaluate
from funcnn.train.run_folder import RunFolder, best_indices, higher_is_better
from funcnn.train.state import TrainState
from funcnn.train.step import DEFAULT_LOSS, Loss, Preprocess, StepMetrics


class TrainStart(NamedTuple):
    """What a callback knows before the first step.

    Attributes:
      template: the train state's structure, shapes, dtypes and shardings (``jax.ShapeDtypeStruct``
        leaves), for restoring into.
      state: the state training starts from (``None`` until it is made or restored).
      history: the records of the epochs already trained (restored ones), ``[]`` for a fresh run.
      epochs: the total number of epochs.
      steps_per_epoch: steps in each epoch, ``None`` for a batch iterable without a length.
      batch_size: examples per step.
      seed: the run's seed.
    """

    template: Any
    state: TrainState | None
    history: list[dict[str, Any]]
    epochs: int
    steps_per_epoch: int | None
    batch_size: int
    seed: int


class StopTraining(Exception):  # noqa: N818 (a signal to fit, not a failure)
    """Raised by a callback's ``on_epoch_end`` to end ``fit`` after that epoch, as if it were the
    last (the other callbacks still see the epoch end), or by its ``on_train_begin`` to train no
    epoch at all (a resumed run that had already stopped); from another hook it is an error."""


class Callback:
    """A hook into [`funcnn.train.fit`][funcnn.train.fit.fit]; every method does nothing unless overridden."""

    def on_train_begin(self, start: TrainStart) -> tuple[TrainState, list[dict[str, Any]]] | None:
        """Before the first step; return ``(state, history)`` to resume from them, or raise
        [`StopTraining`][funcnn.train.callbacks.StopTraining] to train no further epoch (the later callbacks
        still begin).

        Args:
          start: what the run knows before its first step.

        Returns:
          ``None``, or ``(state, history)`` to resume from.
        """
        return None

    def on_steps(self, steps: int, metrics: StepMetrics) -> None:
        """``steps`` more steps ran; ``metrics`` are the latest ones.

        Args:
          steps: how many steps ran since the last call.
          metrics: the latest steps' [`StepMetrics`][funcnn.train.StepMetrics] (stacked along
            the steps after a scanned run of them).
        """

    def on_epoch_end(self, state: TrainState, history: list[dict[str, Any]]) -> None:
        """An epoch ended; its record is ``history[-1]``.

        Args:
          state: the train state after the epoch.
          history: every epoch's record so far; a callback may add to the last one.
        """

    def on_train_end(self, state: TrainState, history: list[dict[str, Any]]) -> None:
        """The last epoch ended.

        Args:
          state: the final train state.
          history: every epoch's record.
        """

    def close(self, error: BaseException | None) -> None:
        """Training ended: well (``error`` is ``None``) or by ``error``.

        Args:
          error: ``None``, or the exception that ended training (``fit`` raises it after
            every callback is closed).
        """


HOOKS = ("on_train_begin", "on_steps", "on_epoch_end", "on_train_end", "close")
"""The hooks of the protocol; an object with any of them is a callback."""


class _Hooks(Callback):
    """An object with some of the hooks, as a [`Callback`][funcnn.train.callbacks.Callback] (the others do
    nothing)."""

    def __init__(self, hooks: Any) -> None:
        self.hooks = hooks
        for name in HOOKS:
            if callable(getattr(hooks, name, None)):
                setattr(self, name, getattr(hooks, name))


def as_callback(where: str, callback: Any) -> Callback:
    """``callback`` as a [`Callback`][funcnn.train.callbacks.Callback]: a subclass as it is, any other object
    with at least one of the [`HOOKS`][funcnn.train.callbacks.HOOKS] with the hooks it lacks doing nothing.

    Args:
      where: who asks, the start of the error message.
      callback: a [`Callback`][funcnn.train.callbacks.Callback], or an object with some of its hooks.

    Returns:
      ``callback`` itself when it is a [`Callback`][funcnn.train.callbacks.Callback], else a wrapper
      calling its hooks.

    Raises:
      LayerConfigError: it has none of the hooks.
    """
    if isinstance(callback, Callback):
        return callback
    if not any(callable(getattr(callback, name, None)) for name in HOOKS):
        raise LayerConfigError(
            f"{where} must be a funcnn.train.Callback or have one of its methods ({', '.join(HOOKS)}), "
            f"got {type(callback).__name__}"
        )
    return _Hooks(callback)


class Checkpoints(Callback):
    """Keep the run in an output folder: resume from it, checkpoint every epoch, write
    ``metrics.jsonl`` and ``curves.png`` ([`funcnn.train.RunFolder`][funcnn.train.RunFolder]), holding its
    lock.

    Args:
      out: the output folder, or a [`RunFolder`][funcnn.train.callbacks.RunFolder] (whose lock the caller may
        hold already).
      resume: continue from the newest intact checkpoint (start afresh when there is none).
      keep: how many checkpoints to keep.
      config: a JSON-serialisable dict stored in ``run.json`` and every checkpoint (e.g. the
        command-line settings), returned by ``checkpoint.read_metadata``.
      keep_best: a metric of the epoch records (``"test_accuracy"``, ``"test_loss"``, ...) whose
        best epoch's checkpoint is never pruned, besides the last ``keep``; ``None`` for none.
        The newest intact checkpoint is still the one resumed, evaluated and exported;
        [`RunFolder.best_step`][funcnn.train.run_folder.RunFolder.best_step] finds the best one.

    Raises:
      LayerConfigError: at construction, ``resume`` is not a bool, ``keep`` not a positive integer
        or ``keep_best`` neither a loss nor an accuracy; from ``on_train_begin``, the checkpoint to
        resume used another seed or batch size; from ``on_epoch_end``, a record without the
        ``keep_best`` metric (no test data).
      FileExistsError: from ``on_train_begin``, the folder holds checkpoints and ``resume`` is false.
      FolderInUseError: from ``on_train_begin``, another process writes the folder.
      CheckpointDamagedError: from ``on_train_begin``, the folder holds damaged checkpoints and
        none intact.
      CheckpointMismatchError: from ``on_train_begin``, the checkpoint to resume does not fit the
        train state, or its metadata lacks the seed, the batch size or the history.
      NonFiniteLossError: from ``on_epoch_end``, the state holds a NaN or infinity (nothing is saved).
      WriteError: ``out`` is not a valid UTF-8 path (at construction), or a file of the folder
        could not be written.
    """

    def __init__(
        self,
        out: str | os.PathLike | RunFolder,
        *,
        resume: bool = False,
        keep: int = checkpoint.DEFAULT_KEEP,
        config: dict[str, Any] | None = None,
        keep_best: str | None = None,
    ) -> None:
        self.folder = out if isinstance(out, RunFolder) else RunFolder(out)
        self.resume = checks.boolean("Checkpoints", "resume", resume)
        self.keep = checks.positive_int("Checkpoints", "keep", keep)
        self.config = config
        if keep_best is not None:
            higher_is_better("Checkpoints: argument `keep_best`", keep_best)
        self.keep_best = keep_best
        self._meta: dict[str, Any] = {}
        self._took_lock = False

    def on_train_begin(self, start: TrainStart) -> tuple[TrainState, list[dict[str, Any]]] | None:
        self._took_lock = self.folder.acquire()
        inspection = self.folder.inspect()
        if inspection.steps and not self.resume:
            raise FileExistsError(
                f"{self.folder.checkpoints} already holds checkpoints (latest step {inspection.steps[-1]}); "
                "resume (--resume) to continue that run, or choose another output folder"
            )
        if inspection.intact is not None:
            meta = self.folder.metadata(inspection.intact)
            for name, value in (("seed", start.seed), ("batch_size", start.batch_size)):
                if name not in meta:
                    raise checkpoint.CheckpointMismatchError(
                        f"{self.folder.checkpoints}: checkpoint step {inspection.intact} lacks {name!r} "
                        "in its metadata"
                    )
                if meta[name] != value:
                    raise LayerConfigError(
                        f"fit: argument `{name}` {value} differs from the {meta[name]} of the checkpoint to "
                        f"resume in {self.folder.checkpoints}"
                    )
        restored = self.folder.restore(start.template, inspection)
        self.folder.write_outputs(restored.history, (self.config or {}).get("model", "model"))
        if self.config is not None:
            self.folder.record_settings(self.config)
        self._meta = {"seed": start.seed, "batch_size": start.batch_size, "config": self.config}
        return None if restored.step is None else (restored.state, restored.history)

    def on_epoch_end(self, state: TrainState, history: list[dict[str, Any]]) -> None:
        meta = {"epoch": history[-1]["epoch"], **self._meta}
        self.folder.save(state, history, meta, self.keep, best=self.keep_best)

    def close(self, error: BaseException | None) -> None:
        if self._took_lock:
            self.folder.release(failed=error is not None)


class EMA(Callback):
    """After each epoch, evaluate the moving average of the parameters (kept by an optimiser
    wrapped in [`funcnn.train.with_ema`][funcnn.train.with_ema]) on ``test_data`` and add ``ema_test_loss``
    and ``ema_test_accuracy`` to the epoch's record.

    Place it before [`Checkpoints`][funcnn.train.callbacks.Checkpoints] (and ``fit``'s ``out=``, which is one:
    pass ``callbacks=[EMA(...), Checkpoints(out)]`` instead), so the record it completes is the one saved and
    written to ``metrics.jsonl``. The average of the parameters is evaluated with the model's current state
    (e.g. batch-norm statistics).

    Args:
      model: the model being trained.
      test_data: ``(images, labels)`` to evaluate on.
      batch_size: examples per evaluation call.
      loss: per-example ``loss(logits, labels)``, as given to ``fit``.
      preprocess: maps a raw batch to model inputs, as given to ``fit``.
      mesh: the devices to evaluate on, as given to ``fit`` (``None``: every device, as ``fit``).

    Raises:
      LayerConfigError: at construction, ``model`` is not a layer, ``test_data`` not
        ``(images, labels)`` arrays of one length with integer labels, or ``batch_size`` not a
        positive integer; from ``on_train_begin``, the optimiser keeps no moving average
        (train with [`funcnn.train.with_ema`][funcnn.train.with_ema]).
    """

    def __init__(
        self,
        model: Layer,
        test_data: tuple[np.ndarray, np.ndarray],
        *,
        batch_size: int = 1000,
        loss: Loss = DEFAULT_LOSS,
        preprocess: Preprocess = scale_images,
        mesh: Mesh | None = None,
    ) -> None:
        self.model = checks.layer("EMA", "argument `model`", model)
        self.test_data = checks.labelled_data("EMA", "test_data", test_data)
        self.batch_size = checks.positive_int("EMA", "batch_size", batch_size)
        self.loss, self.preprocess, self.mesh = loss, preprocess, mesh

    def on_train_begin(self, start: TrainStart) -> None:
        averages = jax.tree.leaves(start.template.opt_state, is_leaf=lambda n: isinstance(n, EmaState))
        if not any(isinstance(node, EmaState) for node in averages):
            raise LayerConfigError(
                "EMA: the optimiser keeps no moving average of the parameters; train with "
                "optimizer=funcnn.train.with_ema(optimizer, decay)"
            )
        if self.mesh is None:
            self.mesh = distributed.data_mesh()

    def on_epoch_end(self, state: TrainState, history: list[dict[str, Any]]) -> None:
        result = evaluate(
            self.model, ema_params(state), state.model_state, *self.test_data, batch_size=self.batch_size,
            loss=self.loss, preprocess=self.preprocess, mesh=self.mesh,
        )  # fmt: skip
        history[-1]["ema_test_loss"] = result["loss"]
        history[-1]["ema_test_accuracy"] = result["accuracy"]


class EarlyStopping(Callback):
    """Stop training once ``monitor`` has not improved for ``patience`` epochs.

    An epoch improves when it beats the best so far by more than ``min_delta`` (an
    accuracy higher, a loss lower). The decision is a function of the history alone, which
    every checkpoint holds, so a resumed run stops after the same epoch as an uninterrupted
    one. A run that has already stopped is told by [`reason`][funcnn.train.callbacks.EarlyStopping.reason] of
    its history.

    Args:
      patience: epochs without improvement to allow; the run stops after the ``patience``-th.
      monitor: a metric of the epoch records: ``"test_accuracy"``, ``"test_loss"``,
        ``"ema_test_accuracy"`` (after [`EMA`][funcnn.train.callbacks.EMA]), ...
      min_delta: the least change that counts as an improvement.

    Attributes:
      stopped: why it stopped training (a sentence), ``None`` while it has not.

    Raises:
      LayerConfigError: a bad argument; from ``on_epoch_end``, a record without ``monitor``.
    """

    def __init__(self, patience: int, *, monitor: str = "test_accuracy", min_delta: float = 0.0) -> None:
        self.patience = checks.positive_int("EarlyStopping", "patience", patience)
        self.where = "EarlyStopping: argument `monitor`"
        higher_is_better(self.where, monitor)
        self.monitor = monitor
        self.min_delta = checks.real("EarlyStopping", "min_delta", min_delta, low=0.0)
        self.stopped: str | None = None

    def reason(self, history: list[dict[str, Any]]) -> str | None:
        """Why a run with ``history`` stops here, or ``None`` when it goes on.

        Args:
          history: the epoch records so far, oldest first.

        Returns:
          A sentence naming the best value, its epoch and the epochs waited; ``None`` while
          fewer than ``patience`` epochs passed since the best (or ``history`` is empty).

        Raises:
          LayerConfigError: a record has no value for ``monitor``.
        """
        if not history:
            return None
        bests = best_indices(self.where, history, self.monitor, self.min_delta)
        waited = len(history) - 1 - bests[-1]
        if waited < self.patience:
            return None
        best = history[bests[-1]]
        return (
            f"{self.monitor} has not improved on {best[self.monitor]:.4f} (epoch {best['epoch']}) for "
            f"{waited} epoch{'s' if waited > 1 else ''} (patience {self.patience})"
        )

    def on_train_begin(self, start: TrainStart) -> None:
        """A resumed run that had already stopped early trains no further epoch."""
        self.stopped = self.reason(start.history)
        if self.stopped is not None:
            raise StopTraining(self.stopped)

    def on_epoch_end(self, state: TrainState, history: list[dict[str, Any]]) -> None:
        self.stopped = self.reason(history)
        if self.stopped is not None:
            raise StopTraining(self.stopped)


TENSORBOARD_INSTALL = "pip install 'funcnn[tensorboard]'"
"""How to install what [`TensorBoard`][funcnn.train.callbacks.TensorBoard] needs."""


class TensorBoard(Callback):
    """Write each epoch's record as TensorBoard scalars under ``logdir`` (process 0 only), at
    the epoch's last step: ``loss/train``, ``loss/test``, ``accuracy/train``, ``accuracy/test`` (and
    ``loss/ema_test``, ``accuracy/ema_test`` after [`EMA`][funcnn.train.callbacks.EMA]), ``images_per_second``
    and, when given, ``learning_rate``. Needs the ``tensorboardX`` package (no TensorFlow).

    Place it after [`Checkpoints`][funcnn.train.callbacks.Checkpoints]: on a resumed run it then knows the
    epochs restored, and what an earlier, killed process logged after them is dropped from view (TensorBoard's
    ``purge_step``).

    Args:
      logdir: the folder of the event files (``OUT/tensorboard`` from ``funcnn train``).
      learning_rate: the learning rate, a number or a schedule of the step (as given to
        optax), logged at the rate of each epoch's last step; ``None`` to leave it out.

    Raises:
      ImportError: ``tensorboardX`` is not installed; the message says how to install it.
    """

    def __init__(
        self, logdir: str | os.PathLike, *, learning_rate: float | Callable[[int], Any] | None = None
    ) -> None:
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            raise ImportError(f"TensorBoard needs the tensorboardX package: {TENSORBOARD_INSTALL}") from None
        self.make_writer = SummaryWriter
        self.logdir = os.fspath(logdir)
        self.learning_rate = learning_rate
        self.writer: Any = None

    def on_train_begin(self, start: TrainStart) -> None:
        if jax.process_index() == 0:
            purge = start.history[-1]["step"] + 1 if start.history else None
            self.writer = self.make_writer(self.logdir, purge_step=purge)

    def on_epoch_end(self, state: TrainState, history: list[dict[str, Any]]) -> None:
        if self.writer is None:
            return
        record = history[-1]
        for tag, value in tensorboard_scalars(record, self.learning_rate).items():
            self.writer.add_scalar(tag, value, record["step"])
        self.writer.flush()

    def close(self, error: BaseException | None) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def tensorboard_scalars(
    record: dict[str, Any], learning_rate: float | Callable[[int], Any] | None = None
) -> dict[str, float]:
    """The scalars [`TensorBoard`][funcnn.train.callbacks.TensorBoard] writes for an epoch's ``record``: each
    ``<split>_loss`` and ``<split>_accuracy`` as ``loss/<split>`` and ``accuracy/<split>``, the images per
    second, and the learning rate of the epoch's last step (``learning_rate(step - 1)``).

    Args:
      record: an epoch's record; values that are not finite numbers (e.g. ``None``) are left out.
      learning_rate: a number, a schedule of the step, or ``None`` to leave the rate out.

    Returns:
      The scalars by tag, as Python floats.
    """
    scalars = {}
    for name, value in record.items():
        split, _, metric = name.rpartition("_")
        if metric in ("loss", "accuracy") and split and _is_number(value):
            scalars[f"{metric}/{split}"] = float(value)
    if _is_number(record.get("images_per_second")):
        scalars["images_per_second"] = float(record["images_per_second"])
    if learning_rate is not None:
        rate = learning_rate(record["step"] - 1) if callable(learning_rate) else learning_rate
        scalars["learning_rate"] = float(rate)
    return scalars


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class ProgressBar(Callback):
    """A tqdm bar over all steps (loss, accuracy and images per second of the latest steps)
    and one line per epoch; shown by process 0 only.

    Args:
      enabled: show it (``False`` keeps it silent, e.g. in a test).
    """

    def __init__(self, *, enabled: bool = True) -> None:
        self.enabled = enabled
        self.bar: tqdm | None = None
        self.epochs = 0
        self.batch_size = 1

    def on_train_begin(self, start: TrainStart) -> None:
        steps = start.steps_per_epoch
        total, done = (None, 0) if steps is None else (start.epochs * steps, len(start.history) * steps)
        self.epochs, self.batch_size = start.epochs, start.batch_size
        enabled = self.enabled and jax.process_index() == 0
        self.bar = tqdm(total=total, initial=done, unit="step", disable=not enabled, dynamic_ncols=True)

    def on_steps(self, steps: int, metrics: StepMetrics) -> None:
        self.bar.update(steps)
        rate = self.bar.format_dict.get("rate") or 0.0
        postfix = {
            "loss": f"{float(np.mean(metrics.loss)):.4f}",
            "acc": f"{float(np.mean(metrics.accuracy)):.4f}",
            "img/s": f"{rate * self.batch_size:.0f}",
        }
        self.bar.set_postfix(postfix, refresh=steps > 1)

    def on_epoch_end(self, state: TrainState, history: list[dict[str, Any]]) -> None:
        if not self.bar.disable:
            self.bar.write(epoch_line(history[-1], self.epochs))

    def close(self, error: BaseException | None) -> None:
        if self.bar is not None:
            self.bar.close()


def epoch_line(record: dict[str, Any], epochs: int) -> str:
    """One line per epoch for the log.

    Args:
      record: the epoch's record, as ``fit`` makes it.
      epochs: the run's total number of epochs.

    Returns:
      ``"epoch e/epochs: train loss ... acc ..."``, with the test and EMA figures when the record
      has them, the seconds and the images per second.
    """
    line = (
        f"epoch {record['epoch']}/{epochs}: train loss {record['train_loss']:.4f} "
        f"acc {record['train_accuracy']:.4f}"
    )
    if record["test_accuracy"] is not None:
        line += f", test loss {record['test_loss']:.4f} acc {record['test_accuracy']:.4f}"
    if record.get("ema_test_accuracy") is not None:
        line += f", EMA test loss {record['ema_test_loss']:.4f} acc {record['ema_test_accuracy']:.4f}"
    return line + f", {record['seconds']:.1f} s, {record['images_per_second']:.0f} img/s"
