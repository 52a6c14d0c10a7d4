"""``fit``'s callbacks: what a run does besides training, each a few lines.

A callback subclasses :class:`Callback` and overrides the hooks it needs (any
other object with some of these methods works too, the others doing nothing);
:func:`funcnn.train.fit` calls them in the order given:

- ``on_train_begin(start)`` before the first step; it may return
  ``(state, history)`` to resume from (:class:`Checkpoints` does), and the
  callbacks after it see that in ``start``;
- ``on_steps(steps, metrics)`` as steps finish (``steps`` more, ``metrics`` the latest);
- ``on_epoch_end(state, history)`` after each epoch (its record is ``history[-1]``);
- ``on_train_end(state, history)`` once the last epoch ran;
- ``close(error)`` always, last: ``error`` is ``None``, or what ended training.

An example, stopping when the test accuracy passes a target::

    class StopAt(fn.train.Callback):
        def __init__(self, target):
            self.target = target

        def on_epoch_end(self, state, history):
            if history[-1]["test_accuracy"] >= self.target:
                raise fn.train.StopTraining
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple

import jax
import numpy as np
from tqdm.auto import tqdm

from funcnn import checkpoint, checks
from funcnn.core import LayerConfigError
from funcnn.train.run_folder import RunFolder
from funcnn.train.state import TrainState
from funcnn.train.step import StepMetrics


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
    last (the other callbacks still see the epoch end); from another hook it is an error."""


class Callback:
    """A hook into :func:`funcnn.train.fit`; every method does nothing unless overridden."""

    def on_train_begin(self, start: TrainStart) -> tuple[TrainState, list[dict[str, Any]]] | None:
        """Before the first step; return ``(state, history)`` to resume from them."""
        return None

    def on_steps(self, steps: int, metrics: StepMetrics) -> None:
        """``steps`` more steps ran; ``metrics`` are the latest ones."""

    def on_epoch_end(self, state: TrainState, history: list[dict[str, Any]]) -> None:
        """An epoch ended; its record is ``history[-1]``."""

    def on_train_end(self, state: TrainState, history: list[dict[str, Any]]) -> None:
        """The last epoch ended."""

    def close(self, error: BaseException | None) -> None:
        """Training ended: well (``error`` is ``None``) or by ``error``."""


HOOKS = ("on_train_begin", "on_steps", "on_epoch_end", "on_train_end", "close")
"""The hooks of the protocol; an object with any of them is a callback."""


class _Hooks(Callback):
    """An object with some of the hooks, as a :class:`Callback` (the others do nothing)."""

    def __init__(self, hooks: Any) -> None:
        self.hooks = hooks
        for name in HOOKS:
            if callable(getattr(hooks, name, None)):
                setattr(self, name, getattr(hooks, name))


def as_callback(where: str, callback: Any) -> Callback:
    """``callback`` as a :class:`Callback`: a subclass as it is, any other object with at least
    one of the :data:`HOOKS` with the hooks it lacks doing nothing.

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
    ``metrics.jsonl`` and ``curves.png`` (:class:`funcnn.train.RunFolder`), holding its lock.

    Args:
      out: the output folder, or a :class:`RunFolder` (whose lock the caller may hold already).
      resume: continue from the newest intact checkpoint (start afresh when there is none).
      keep: how many checkpoints to keep.
      config: a JSON-serialisable dict stored in ``run.json`` and every checkpoint (e.g. the
        command-line settings), returned by ``checkpoint.read_metadata``.

    Raises (from ``on_train_begin``):
      FileExistsError: the folder holds checkpoints and ``resume`` is false.
      LayerConfigError: the checkpoint used another seed or batch size.
      FolderInUseError: another process writes the folder.
    """

    def __init__(
        self,
        out: str | os.PathLike | RunFolder,
        *,
        resume: bool = False,
        keep: int = checkpoint.DEFAULT_KEEP,
        config: dict[str, Any] | None = None,
    ) -> None:
        self.folder = out if isinstance(out, RunFolder) else RunFolder(out)
        self.resume = checks.boolean("Checkpoints", "resume", resume)
        self.keep = checks.positive_int("Checkpoints", "keep", keep)
        self.config = config
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
        self.folder.save(state, history, {"epoch": history[-1]["epoch"], **self._meta}, self.keep)

    def close(self, error: BaseException | None) -> None:
        if self._took_lock:
            self.folder.release(failed=error is not None)


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
    """One line per epoch for the log."""
    line = (
        f"epoch {record['epoch']}/{epochs}: train loss {record['train_loss']:.4f} "
        f"acc {record['train_accuracy']:.4f}"
    )
    if record["test_accuracy"] is not None:
        line += f", test loss {record['test_loss']:.4f} acc {record['test_accuracy']:.4f}"
    return line + f", {record['seconds']:.1f} s, {record['images_per_second']:.0f} img/s"
