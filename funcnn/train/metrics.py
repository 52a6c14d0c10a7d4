"""Per-epoch metrics as JSON lines (``metrics.jsonl``) and a PNG of the training curves."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator


def write_jsonl(path: str | os.PathLike, records: Sequence[dict[str, Any]]) -> None:
    """Atomically (re)write ``path`` with one JSON object per line.

    Args:
      path: the file to write.
      records: the objects, in order.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in records))
    os.replace(tmp, path)


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The JSON objects of ``path``, one per non-empty line.

    Args:
      path: a file written by [`write_jsonl`][funcnn.train.metrics.write_jsonl].

    Returns:
      The records, in order.
    """
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def plot_curves(path: str | os.PathLike, history: Sequence[dict[str, Any]], title: str | None = None) -> None:
    """Write a PNG with loss and accuracy per epoch, train and test (no pyplot, no global backend).

    Epochs are whole numbers on the axis, also for short runs.

    Args:
      path: the PNG to write.
      history: the per-epoch records (``epoch``, ``train_loss``, ``test_loss``,
        ``train_accuracy``, ``test_accuracy``; missing or ``None`` values are skipped).
      title: the figure's title, e.g. the model and the run's folder.
    """
    fig = Figure(figsize=(10, 4), layout="constrained")
    if title:
        fig.suptitle(title)
    loss_ax, acc_ax = fig.subplots(1, 2)
    for ax, metric in ((loss_ax, "loss"), (acc_ax, "accuracy")):
        for split in ("train", "test"):
            points = [
                (r["epoch"], r[f"{split}_{metric}"])
                for r in history
                if r.get(f"{split}_{metric}") is not None
            ]
            if points:
                ax.plot(*zip(*points, strict=True), marker="o", label=split)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp")
    fig.savefig(temporary, dpi=100, format=path.suffix[1:] or "png")
    os.replace(temporary, path)  # a kill mid-write leaves the previous picture
