"""A training run's output folder and its one owner, [`RunFolder`][funcnn.train.run_folder.RunFolder].

``OUT`` holds:

- ``checkpoints/``: one verified step per saved epoch ([`funcnn.checkpoint`][funcnn.checkpoint]): the newest
  ``keep``, and with ``best`` the best epoch's too ([`best_indices`][funcnn.train.run_folder.best_indices]);
- ``damaged-checkpoints/``: steps found damaged, moved aside, never deleted;
- ``metrics.jsonl`` and ``curves.png``: the history, rewritten after every checkpoint;
- ``run.json``: the run's settings, written before its first step (an extended run
  killed before its next checkpoint resumes the extension from it);
- ``run.lock``: held by the process writing ``OUT`` (its host and process id inside).

Nothing else reads or writes these paths. A [`RunFolder`][funcnn.train.run_folder.RunFolder] verifies each
step at most once ([`RunFolder.inspect`][funcnn.train.run_folder.RunFolder.inspect]), restores the newest
intact one (or hands the template back when there is none), writes each epoch with stop signals held off,
turns every failed write into a [`funcnn.checkpoint.WriteError`][funcnn.checkpoint.WriteError] naming the
path, and removes a folder it created when the run fails before its first checkpoint. With several processes,
process 0 writes and holds the lock; the others only read.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import socket
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import jax

from funcnn import checkpoint, interrupts
from funcnn.checkpoint import Damage, Problem, WriteError
from funcnn.core import LayerConfigError
from funcnn.train.loop import NonFiniteLossError
from funcnn.train.metrics import plot_curves, write_jsonl

CHECKPOINTS = "checkpoints"
METRICS = "metrics.jsonl"
CURVES = "curves.png"
SETTINGS = "run.json"
LOCK = "run.lock"


def higher_is_better(where: str, monitor: str) -> bool:
    """Whether a larger value of the epoch-record metric ``monitor`` is better: an accuracy
    (``test_accuracy``, ``ema_test_accuracy``, ...) yes, a loss (``test_loss``, ...) no.

    Args:
      where: who asks, the start of the error message (e.g. ``"EarlyStopping: argument `monitor`"``).
      monitor: the name of a metric of the epoch records.

    Returns:
      ``True`` for a name ending in ``accuracy``, ``False`` for one ending in ``loss``.

    Raises:
      LayerConfigError: ``monitor`` names neither (or is not a string); ``where`` says who asked.
    """
    if isinstance(monitor, str) and monitor.endswith("accuracy"):
        return True
    if isinstance(monitor, str) and monitor.endswith("loss"):
        return False
    raise LayerConfigError(
        f"{where} must name a loss or an accuracy of the epoch records (e.g. test_accuracy, "
        f"test_loss), got {monitor!r}"
    )


def best_indices(
    where: str, history: list[dict[str, Any]], monitor: str, min_delta: float = 0.0
) -> list[int]:
    """For each epoch ``i``, the index of the best of ``history[: i + 1]`` by ``monitor``.

    An epoch is better than the best so far when it improves on it by more than
    ``min_delta``; the first epoch is the first best, and of equal ones the earliest stays.
    A pure function of the history, which every checkpoint holds: a resumed run finds
    the same bests as an uninterrupted one.

    Args:
      where: who asks, the start of the error message.
      history: the epoch records, oldest first.
      monitor: the metric of the records: an accuracy (higher is better) or a loss (lower is).
      min_delta: the least improvement that counts; 0 counts any strict improvement.

    Returns:
      A list as long as ``history``; entry ``i`` is an index in ``0 .. i``.

    Raises:
      LayerConfigError: ``monitor`` is neither a loss nor an accuracy, or an epoch's record
        has no number for it (e.g. ``fit`` without ``test_data``).

    Examples:
        >>> best_indices("x", [{"test_loss": 3.0}, {"test_loss": 1.0}, {"test_loss": 2.0}], "test_loss")
        [0, 1, 1]
    """
    higher = higher_is_better(where, monitor)
    bests: list[int] = []
    for i, record in enumerate(history):
        value = record.get(monitor)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise LayerConfigError(
                f"{where} {monitor!r}: epoch {record.get('epoch', i + 1)}'s record has no value for it "
                f"({value!r}; fit without test_data?)"
            )
        best = history[bests[-1]][monitor] if bests else None
        improves = best is None or (value > best + min_delta if higher else value < best - min_delta)
        bests.append(i if improves else bests[-1])
    return bests


def protected_steps(history: list[dict[str, Any]], best: str, keep: int) -> set[int]:
    """The steps a save keeps besides the newest ``keep``: the best by ``best`` of each of the
    last ``keep`` epochs' histories, so each kept checkpoint's best is kept too (a resume
    from an older one, after the newest is found damaged, still has its best).

    Args:
      history: the epoch records, oldest first, each with its ``step``; the last is the
        epoch being saved.
      best: the metric of the records whose best epochs are kept.
      keep: how many of the newest checkpoints a save keeps.

    Returns:
      The ``step`` of each of those best epochs.

    Raises:
      LayerConfigError: ``best`` is neither a loss nor an accuracy, or a record has no number for it.
    """
    bests = best_indices("Checkpoints: argument `keep_best`", history, best)
    return {history[i]["step"] for i in bests[-keep:]}


class FolderInUseError(RuntimeError):
    """Another process holds the lock of the output folder; the message names it."""


class Inspection(NamedTuple):
    """What the checkpoints of a run folder hold, each step verified once.

    Attributes:
      steps: every finished step, ascending.
      intact: the newest intact step, or ``None``.
      damaged: ``(step, problem)`` for each damaged step newer than ``intact``, newest first.
      unfinished: steps newer than ``intact`` whose write had not finished (no manifest yet).
    """

    steps: tuple[int, ...]
    intact: int | None
    damaged: tuple[tuple[int, Problem], ...]
    unfinished: tuple[int, ...]


class Restored(NamedTuple):
    """What [`RunFolder.restore`][funcnn.train.run_folder.RunFolder.restore] gives: the state (the template
    when nothing was restored),
    the history so far, and the step restored (``None`` when nothing was).

    Attributes:
      state: the restored train state, laid out as the template; the template itself when there
        was no intact step.
      history: the epoch records saved with that step, oldest first; ``[]`` for a fresh run.
      step: the step restored, ``None`` when nothing was.
    """

    state: Any
    history: list[dict[str, Any]]
    step: int | None


class RunFolder:
    """The one reader and writer of a run's output folder ``path``.

    Args:
      path: the folder (created when first written).
      writes: whether this process writes it; default: process 0 of the run.

    Raises:
      WriteError: the path cannot be written as a file name (not valid UTF-8).
    """

    def __init__(self, path: str | os.PathLike, *, writes: bool | None = None) -> None:
        self.path = Path(path)
        try:
            str(self.path).encode("utf-8")
        except UnicodeEncodeError:
            raise WriteError(
                22, "the name is not valid UTF-8 (checkpoints and metrics need a UTF-8 path)", repr(str(path))
            ) from None
        self._writes = writes
        self.checkpoints = self.path / CHECKPOINTS
        self.settings_path = self.path / SETTINGS
        self.metrics_path = self.path / METRICS
        self.curves_path = self.path / CURVES
        self._verified: dict[int, list[Problem]] = {}
        self._lock: Any = None
        self._created = False

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    @property
    def writes(self) -> bool:
        """Whether this process writes the folder (asked of JAX only when first needed, so a
        [`RunFolder`][funcnn.train.run_folder.RunFolder] can be made before JAX's backend starts)."""
        if self._writes is None:
            self._writes = jax.process_index() == 0
        return self._writes

    # -- the lock ----------------------------------------------------------------

    def acquire(self) -> bool:
        """Take ``OUT/run.lock`` for this process (the writing one); return whether it was taken
        now (``False`` when already held here, or when this process does not write).

        A lock left by a process that died (its file names it, but no one holds it)
        is taken over with a warning.

        Raises:
          FolderInUseError: another process holds the lock.
          WriteError: the folder cannot be created or the lock written.
        """
        if not self.writes or self._lock is not None:
            return False
        with interrupts.deferred():  # a stop signal cannot leave the lock held by no one
            return self._acquire()

    def _acquire(self) -> bool:
        self._created = not self.path.exists()
        path = self.path / LOCK
        with self._writing(path):
            self.path.mkdir(parents=True, exist_ok=True)
            handle = open(path, "a+")  # noqa: SIM115 (held until release)
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = _holder(handle.read())
            handle.close()
            raise FolderInUseError(
                f"{self.path} is in use by {holder}; wait for that run to end or stop it "
                "(two runs must not write one folder)"
            ) from None
        handle.seek(0)
        left = handle.read().strip()
        if left:
            warnings.warn(
                f"{self.path}: took over the lock left by {_holder(left)}, which is no longer running",
                checkpoint.DamagedCheckpointWarning,
                stacklevel=2,
            )
        with self._writing(path):
            handle.seek(0)
            handle.truncate()
            since = time.strftime("%Y-%m-%d %H:%M:%S")
            handle.write(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "since": since}))
            handle.flush()
        self._lock = handle
        self._verified.clear()  # what was read before the lock may have changed since
        return True

    def release(self, *, failed: bool = False) -> None:
        """Let go of the lock. With ``failed``, a folder created by
        [`acquire`][funcnn.train.run_folder.RunFolder.acquire] that holds
        no checkpoint is removed first (the run failed before its first checkpoint).

        Does nothing when this object does not hold the lock.

        Args:
          failed: the run failed; remove the folder if it was created by this lock and
            holds no finished checkpoint step.
        """
        if self._lock is None:
            return
        with interrupts.deferred():  # the removal and the release finish, whatever arrives
            if failed and self._created and not self.has_checkpoints():
                shutil.rmtree(self.path, ignore_errors=True)
            with contextlib.suppress(OSError):
                self._lock.truncate(0)
            self._lock.close()
            self._lock = None

    @contextlib.contextmanager
    def lock(self) -> Iterator[RunFolder]:
        """Hold the lock for the block ([`acquire`][funcnn.train.run_folder.RunFolder.acquire], then
        [`release`][funcnn.train.run_folder.RunFolder.release], failed when the
        block raises); re-entrant.

        Yields:
          This [`RunFolder`][funcnn.train.run_folder.RunFolder].

        Raises:
          FolderInUseError: another process holds the lock.
          WriteError: the folder cannot be created or the lock written.
        """
        took = self.acquire()
        try:
            yield self
        except BaseException:
            if took:
                self.release(failed=True)
            raise
        if took:
            self.release()

    # -- reading -----------------------------------------------------------------

    def inspect(self) -> Inspection:
        """The finished steps, the newest intact one and the damaged and unfinished ones newer
        than it; each step's files are hashed at most once per
        [`RunFolder`][funcnn.train.run_folder.RunFolder]. A step
        removed while it is read (pruned by a run that is saving) is left out."""
        steps = checkpoint.all_steps(self.checkpoints)
        damaged, unfinished = [], []
        intact = None
        for step in reversed(steps):
            if step not in self._verified:
                self._verified[step] = checkpoint.problems(self.checkpoints, step)
            found = self._verified[step]
            if not found:
                intact = step
                break
            if found[0].kind is Damage.UNFINISHED:
                unfinished.append(step)
            elif found[0].kind is not Damage.GONE:
                damaged.append((step, found[0]))
        return Inspection(tuple(steps), intact, tuple(damaged), tuple(unfinished))

    def metadata(self, step: int) -> dict[str, Any]:
        """The metadata of ``step``, already verified by
        [`inspect`][funcnn.train.run_folder.RunFolder.inspect].

        Args:
          step: a finished step; one this object has not verified yet is verified first.

        Returns:
          The metadata saved with the step (``history``, ``epoch``, ``seed``, ``batch_size``,
          ``config``).

        Raises:
          CheckpointNotFoundError: there is no such step.
          CheckpointDamagedError: the step was not verified before and is not intact.
        """
        return checkpoint.read_metadata(self.checkpoints, step, verify=step not in self._verified)

    def settings(self) -> dict[str, Any] | None:
        """The settings in ``OUT/run.json``, or ``None`` when it does not exist.

        Raises:
          CheckpointMismatchError: it is not a JSON object.
        """
        path = self.settings_path
        try:
            record = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (ValueError, OSError) as error:
            raise checkpoint.CheckpointMismatchError(f"{path}: unreadable ({error})") from None
        if not isinstance(record, dict):
            raise checkpoint.CheckpointMismatchError(f"{path}: holds no settings (a JSON object)")
        return record

    def has_checkpoints(self) -> bool:
        """Whether any finished step is saved (none is verified)."""
        return bool(checkpoint.all_steps(self.checkpoints))

    def intact_step(self, inspection: Inspection, *, doing: str | None) -> int | None:
        """The newest intact step of ``inspection``; ``None`` when there is none and none is
        damaged (no steps, or only unfinished ones). With ``doing`` (e.g. ``"evaluating"``),
        each damaged newer step is reported as a
        [`funcnn.checkpoint.DamagedCheckpointWarning`][funcnn.checkpoint.DamagedCheckpointWarning].

        Args:
          inspection: what [`inspect`][funcnn.train.run_folder.RunFolder.inspect] found.
          doing: what the caller does with the intact step, for the warnings' text; ``None``
            warns of nothing.

        Returns:
          ``inspection.intact``.

        Raises:
          CheckpointDamagedError: steps are damaged and none is intact.
        """
        if inspection.intact is None and inspection.damaged:
            raise checkpoint.CheckpointDamagedError(
                f"{self.checkpoints.absolute()}: no intact checkpoint: "
                + "; ".join(f"step {step} is damaged: {problem}" for step, problem in inspection.damaged)
            )
        for step, problem in inspection.damaged if doing else ():
            warnings.warn(
                f"checkpoint step {step} is damaged ({problem}); {doing} step {inspection.intact}",
                checkpoint.DamagedCheckpointWarning,
                stacklevel=2,
            )
        return inspection.intact

    def best_step(self, monitor: str = "test_accuracy", inspection: Inspection | None = None) -> int | None:
        """The step of the best epoch by ``monitor`` in the newest intact checkpoint's history, when
        that step is intact (kept by ``save(..., best=monitor)``); ``None`` when there is none.

        Args:
          monitor: the metric of the epoch records: an accuracy (higher is better) or a loss.
          inspection: what [`inspect`][funcnn.train.run_folder.RunFolder.inspect] found, or
            ``None`` to inspect now.

        Returns:
          The best epoch's step, or ``None`` (no intact step, an empty history, or the best
          step pruned or damaged).

        Raises:
          LayerConfigError: ``monitor`` is neither a loss nor an accuracy, or a record lacks it.
        """
        inspection = self.inspect() if inspection is None else inspection
        if inspection.intact is None:
            return None
        history = self.metadata(inspection.intact).get("history") or []
        if not history:
            return None
        step = history[best_indices("RunFolder.best_step: argument `monitor`", history, monitor)[-1]]["step"]
        if step not in inspection.steps:
            return None
        if step not in self._verified:
            self._verified[step] = checkpoint.problems(self.checkpoints, step)
        return None if self._verified[step] else step

    def forget(self) -> None:
        """Forget every step not found intact, so the next
        [`inspect`][funcnn.train.run_folder.RunFolder.inspect] looks at them afresh
        (a reader's view of a folder that a run is saving into changes)."""
        self._verified = {step: found for step, found in self._verified.items() if not found}

    def restore(self, template: Any, inspection: Inspection | None = None) -> Restored:
        """The newest intact step's state and history; ``Restored(template, [], None)`` when
        there is none (a fresh run). Damaged steps newer than it are moved aside with a
        [`funcnn.checkpoint.DamagedCheckpointWarning`][funcnn.checkpoint.DamagedCheckpointWarning] each, and
        so are steps whose write never finished, when this process holds the lock
        ([`lock`][funcnn.train.run_folder.RunFolder.lock]: then no one is writing them); without it they are
        left where they are.

        Args:
          template: the train state's structure, shapes, dtypes and shardings to restore into
            (``jax.ShapeDtypeStruct`` leaves, e.g. [`TrainStart`][funcnn.train.callbacks.TrainStart]'s
            ``template``).
          inspection: what [`inspect`][funcnn.train.run_folder.RunFolder.inspect] found, or
            ``None`` to inspect now.

        Returns:
          A [`Restored`][funcnn.train.run_folder.Restored]: state, history and step.

        Raises:
          CheckpointDamagedError: there are damaged steps and none intact.
          CheckpointMismatchError: the step's tree does not fit ``template``, or its metadata holds
            no history.
          WriteError: a damaged step could not be moved aside.
        """
        inspection = self.inspect() if inspection is None else inspection
        self.intact_step(inspection, doing=None)
        checkpoint.sync_processes("funcnn-resume-read")  # every process has read before one moves
        since = "starting afresh" if inspection.intact is None else f"resuming from step {inspection.intact}"
        aside = sorted(
            [*inspection.damaged, *((s, self._verified[s][0]) for s in inspection.unfinished)], reverse=True
        )
        for step, problem in aside if self._lock is not None else ():
            with self._writing(self.path / checkpoint.DAMAGED):
                moved = checkpoint.move_aside(self.checkpoints, step)
            warnings.warn(
                f"checkpoint step {step} is damaged ({problem}); moved it to {moved} and {since}",
                checkpoint.DamagedCheckpointWarning,
                stacklevel=3,
            )
        checkpoint.sync_processes("funcnn-resume")
        if inspection.intact is None:
            return Restored(template, [], None)
        state, meta = checkpoint.restore(self.checkpoints, template, inspection.intact, verify=False)
        if not isinstance(meta.get("history"), list):
            raise checkpoint.CheckpointMismatchError(
                f"{self.checkpoints}: checkpoint step {inspection.intact} holds no history in its metadata"
            )
        return Restored(state, meta["history"], inspection.intact)

    # -- writing -----------------------------------------------------------------

    def record_settings(self, settings: dict[str, Any]) -> None:
        """Write ``OUT/run.json`` atomically (a temporary file, then a rename); nothing when this
        process does not write.

        Args:
          settings: the run's settings, a JSON-serialisable dict.

        Raises:
          WriteError: the folder or the file could not be written.
        """
        if not self.writes:
            return
        path = self.settings_path
        with self._writing(path):
            self.path.mkdir(parents=True, exist_ok=True)
            temporary = path.with_name(f"{SETTINGS}.tmp")
            temporary.write_text(json.dumps(settings, indent=1))
            os.replace(temporary, path)

    def save(
        self,
        state: Any,
        history: list[dict[str, Any]],
        meta: dict[str, Any],
        keep: int,
        *,
        best: str | None = None,
    ) -> None:
        """Checkpoint ``state`` with ``history`` in its metadata, then rewrite the metrics and curves.

        Stop signals wait until the step is written and proved (or removed after a failed write). A state with
        non-finite values is a diverged run: it is never saved. Older steps beyond the newest ``keep`` are
        deleted, except, with ``best``, the best epoch's
        ([`protected_steps`][funcnn.train.run_folder.protected_steps]); each deletion comes after the new step
        is proved, so a kill at any point leaves the best step and the newest intact one.

        Args:
          state: the train state (its ``step`` names the checkpoint).
          history: every epoch's record so far, the last one this state's.
          meta: more metadata (``epoch``, ``config``, ...).
          keep: how many of the newest steps to keep.
          best: the metric of the records (e.g. ``test_accuracy``) whose best epoch's step is kept
            besides them, or ``None``.

        Raises:
          NonFiniteLossError: the state holds a NaN or infinity.
          WriteError: a file could not be written; older steps are intact, the partial one removed.
          LayerConfigError: ``best`` is neither a loss nor an accuracy, or a record lacks it.
        """
        protect = set() if best is None else protected_steps(history, best, keep)
        bad = checkpoint.non_finite_paths(state)
        if bad:
            raise NonFiniteLossError(
                f"training diverged in epoch {meta['epoch']}: non-finite values in {', '.join(bad[:3])}; "
                "no checkpoint was written for this epoch"
            )
        with interrupts.deferred():
            if self.writes:
                with self._writing(self.checkpoints):
                    self.checkpoints.mkdir(parents=True, exist_ok=True)
            checkpoint.sync_processes("funcnn-out-folder")
            step = int(state.step)
            checkpoint.save(
                self.checkpoints, step, state, {**meta, "history": history}, keep=keep, protect=protect
            )
            self._verified[step] = []  # its manifest was just written from these files
            self.write_outputs(history, (meta.get("config") or {}).get("model", "model"))

    def write_outputs(self, history: list[dict[str, Any]], model_name: str) -> None:
        """Rewrite ``metrics.jsonl`` and ``curves.png`` from ``history``, each atomically.

        Called after every checkpoint and on every resume (also of a finished run), so a
        kill between a checkpoint and these files is repaired from the checkpoint's history.
        Nothing is written when this process does not write; ``curves.png`` only for a
        non-empty history.

        Args:
          history: every epoch's record so far.
          model_name: the model's name, for the figure's title.

        Raises:
          WriteError: a file could not be written.
        """
        if not self.writes:
            return
        with self._writing(self.metrics_path):
            write_jsonl(self.metrics_path, history)
        if history:
            with self._writing(self.curves_path):
                plot_curves(self.curves_path, history, f"{model_name}: {self.path}")

    @contextlib.contextmanager
    def _writing(self, path: Path) -> Iterator[None]:
        """Turn an OS error of the block into a [`WriteError`][funcnn.train.run_folder.WriteError] naming
        ``path``."""
        try:
            yield
        except WriteError:
            raise
        except OSError as error:
            raise WriteError(error.errno, error.strerror, str(error.filename or path)) from None


def _holder(text: str) -> str:
    """Who a lock file names, in words."""
    try:
        record = json.loads(text)
        return f"process {record['pid']} on {record['host']} (since {record['since']})"
    except (ValueError, KeyError, TypeError):
        return "another process"
