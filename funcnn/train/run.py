"""A training run's output folder, and what it shows: one place for each.

``OUT`` holds ``checkpoints/`` (verified, :mod:`funcnn.checkpoint`),
``metrics.jsonl`` (one record per epoch), ``curves.png``, ``run.json`` (the
run's settings, written before its first step) and, when one was found
damaged, ``damaged-checkpoints/``. This module resumes a run (and checks that
it may), writes each epoch, and draws the progress bar and the epoch lines;
:mod:`funcnn.train.loop` does the training.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import jax
import numpy as np
from tqdm.auto import tqdm

from funcnn import checkpoint
from funcnn.core import LayerConfigError
from funcnn.train.loop import NonFiniteLossError
from funcnn.train.metrics import plot_curves, write_jsonl
from funcnn.train.state import TrainState
from funcnn.train.step import StepMetrics

RUN_FILE = "run.json"
"""``OUT/run.json``: the ``config`` of the run in ``OUT``, written before its first step, so a
run extended to more epochs and killed before its next checkpoint resumes the extension."""


def resume(
    out: Path, target: TrainState, *, resume: bool, seed: int, batch_size: int
) -> tuple[TrainState | None, list[dict[str, Any]]]:
    """The newest intact checkpoint's state and history when resuming; ``(None, [])`` when there is none.

    Damaged steps newer than it are reported (a :class:`funcnn.checkpoint.DamagedCheckpointWarning`
    each) and moved aside, never deleted, before training continues past them; when
    the only steps are unfinished first saves (no manifest), the run starts afresh.
    The metrics file and curves are rewritten from the restored history.

    Raises:
      FileExistsError: ``out`` holds checkpoints and ``resume`` is false.
      CheckpointDamagedError: there are checkpoints, none intact and not all unfinished.
      CheckpointMismatchError: the checkpoint's metadata lacks the run's fields.
      LayerConfigError: the checkpoint used another seed or batch size.
    """
    directory = out / "checkpoints"
    writes = jax.process_index() == 0  # with several processes, one changes the folder
    latest = checkpoint.latest_step(directory)
    if latest is None:
        if (out / "metrics.jsonl").exists() and writes:
            write_jsonl(out / "metrics.jsonl", [])
        return None, []
    if not resume:
        raise FileExistsError(
            f"{directory} already holds checkpoints (latest step {latest}); "
            "resume (--resume) to continue that run, or choose another output folder"
        )
    intact, damaged = checkpoint.latest_intact_step(directory)
    if intact is None and not all(checkpoint.unfinished(problem) for _, problem in damaged):
        raise checkpoint.CheckpointDamagedError(
            f"{directory}: no intact checkpoint to resume from: "
            + "; ".join(f"step {step}: {problem}" for step, problem in damaged)
        )
    meta = None if intact is None else checkpoint.read_metadata(directory, intact)
    if meta is not None:
        missing = [key for key in ("epoch", "seed", "batch_size", "history") if key not in meta]
        if missing:
            raise checkpoint.CheckpointMismatchError(
                f"{directory}: checkpoint step {intact} lacks {missing} in its metadata"
            )
        for name, value in (("seed", seed), ("batch_size", batch_size)):
            if meta[name] != value:
                raise LayerConfigError(
                    f"fit: argument `{name}` {value} differs from the {meta[name]} of the checkpoint to "
                    f"resume in {directory}"
                )
    checkpoint.sync_processes("funcnn-resume-read")  # every process has read the steps before one moves any
    for step, problem in damaged if writes else ():
        moved = checkpoint.move_aside(directory, step)
        since = "starting afresh" if intact is None else f"resuming from step {intact}"
        warnings.warn(
            f"checkpoint step {step} is damaged ({problem}); moved it to {moved} and {since}",
            checkpoint.DamagedCheckpointWarning,
            stacklevel=3,
        )
    checkpoint.sync_processes("funcnn-resume")
    if intact is None:  # only unfinished first saves: nothing was lost
        if writes:
            write_jsonl(out / "metrics.jsonl", [])
        return None, []
    state, meta = checkpoint.restore(directory, target, intact)
    if writes:
        write_outputs(out, meta["history"], (meta.get("config") or {}).get("model", "model"))
    return state, meta["history"]


def record_run(out: Path, config: dict[str, Any]) -> None:
    """Write ``OUT/run.json`` atomically (a temporary file, then a rename)."""
    out.mkdir(parents=True, exist_ok=True)
    temporary = out / f"{RUN_FILE}.tmp"
    temporary.write_text(json.dumps(config, indent=1))
    os.replace(temporary, out / RUN_FILE)


def write_epoch(
    out: Path,
    state: TrainState,
    history: list[dict[str, Any]],
    meta: dict[str, Any],
    keep: int,
    *,
    writes: bool = True,
) -> None:
    """Checkpoint the state (with the history in its metadata), then rewrite the metrics and curves.

    A state with non-finite values is a diverged run: it is never saved. With
    several processes each calls this (the checkpoint is written together) and
    only the one with ``writes`` rewrites the metrics and curves.
    """
    bad = checkpoint.non_finite_paths(state)
    if bad:
        raise NonFiniteLossError(
            f"training diverged in epoch {meta['epoch']}: non-finite values in {', '.join(bad[:3])}; "
            "no checkpoint was written for this epoch"
        )
    if writes:
        out.mkdir(parents=True, exist_ok=True)
    checkpoint.sync_processes("funcnn-out-folder")
    checkpoint.save(out / "checkpoints", int(state.step), state, {**meta, "history": history}, keep=keep)
    if writes:
        write_outputs(out, history, (meta.get("config") or {}).get("model", "model"))


def write_outputs(out: Path, history: list[dict[str, Any]], model_name: str) -> None:
    """Rewrite ``metrics.jsonl`` and ``curves.png`` from ``history``, each atomically.

    Called after every checkpoint and on every resume (also of a finished run), so a
    kill between a checkpoint and these files is repaired from the checkpoint's history.
    """
    write_jsonl(out / "metrics.jsonl", history)
    if history:
        plot_curves(out / "curves.png", history, f"{model_name}: {out}")


def progress_bar(total: int | None, done: int, batch_size: int, enabled: bool) -> tuple[tqdm, Any]:
    """A tqdm bar over all steps, and the ``on_progress(steps, metrics)`` callback that moves it
    and shows the latest loss, accuracy and images per second."""
    bar = tqdm(total=total, initial=done, unit="step", disable=not enabled, dynamic_ncols=True)

    def on_progress(steps: int, metrics: StepMetrics) -> None:
        bar.update(steps)
        rate = bar.format_dict.get("rate") or 0.0
        postfix = {
            "loss": f"{float(np.mean(metrics.loss)):.4f}",
            "acc": f"{float(np.mean(metrics.accuracy)):.4f}",
            "img/s": f"{rate * batch_size:.0f}",
        }
        bar.set_postfix(postfix, refresh=steps > 1)

    return bar, on_progress


def epoch_line(record: dict[str, Any], epochs: int) -> str:
    """One line per epoch for the log."""
    line = (
        f"epoch {record['epoch']}/{epochs}: train loss {record['train_loss']:.4f} "
        f"acc {record['train_accuracy']:.4f}"
    )
    if record["test_accuracy"] is not None:
        line += f", test loss {record['test_loss']:.4f} acc {record['test_accuracy']:.4f}"
    return line + f", {record['seconds']:.1f} s, {record['images_per_second']:.0f} img/s"
