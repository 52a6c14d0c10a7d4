"""The commands behind ``funcnn``: ``train``, ``evaluate``, ``summary`` and ``filters``.

Imported by :mod:`funcnn.cli` only once a command runs, so ``funcnn --help``
and ``funcnn --version`` never load JAX.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import time
import warnings
from pathlib import Path
from typing import Any

import jax
import numpy as np
from matplotlib.figure import Figure

from funcnn import checkpoint, filters
from funcnn.core import Layer
from funcnn.data import augment, load_dataset, load_test_split, scale_images
from funcnn.data.fashion_mnist import CLASS_NAMES, NUM_CLASSES
from funcnn.models import MODELS
from funcnn.ops import conv
from funcnn.settings import SCHEDULES, TRAIN_DEFAULTS, UsageError
from funcnn.shapes import count_params, summary
from funcnn.train import OPTIMIZERS, PRECISIONS, evaluate, fit, make_optimizer
from funcnn.train.run import RUN_FILE, write_outputs


def train(args: argparse.Namespace) -> None:
    """Train a model on Fashion-MNIST; write metrics, curves and checkpoints to --out.

    With ``--coordinator``, ``--num-processes`` and ``--process-id``, this process
    joins a multi-process run first (``jax.distributed.initialize``; on CPU with
    gloo collectives), and only process 0 prints.
    """
    start = time.perf_counter()
    if args.coordinator is not None:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(args.coordinator, args.num_processes, args.process_id)
    say = print if jax.process_index() == 0 else lambda *_: None
    config, done = _train_config(args)
    data = args.data or (Path(config["data"]) if config.get("data") else None)
    config["data"] = None if data is None else str(data.absolute())
    x_train, y_train, x_test, y_test = _load_data(data)
    x_train, y_train = x_train[: config["limit"]], y_train[: config["limit"]]
    config = _with_data_shapes(config, data, x_train, y_train, y_test)
    if done is not None and done["epoch"] >= config["epochs"]:
        if jax.process_index() == 0:
            write_outputs(
                args.out, done["history"], config["model"]
            )  # repairs a kill after the last checkpoint
        say(
            f"already finished: {args.out} holds all {config['epochs']} epochs (step {done['step']}); "
            "to train longer, add --resume with a larger --epochs"
        )
        return
    model, optimizer = _model_and_optimizer(config, len(x_train))
    input_shape = tuple(config["input_shape"])
    params = count_params(jax.eval_shape(lambda k: model.init(k, input_shape)[1], jax.random.key(0)))
    say(
        f"training {config['model']} ({params:,} params) for {config['epochs']} epochs on "
        f"{_devices_line(args)}; "
        f"data: {len(x_train):,} training and {len(x_test):,} test images from "
        f"{data or 'the default Fashion-MNIST'}; output: {args.out}"
    )
    if done is not None:
        say(f"resuming from epoch {done['epoch']} (step {done['step']})")
    result = fit(
        model,
        (x_train, y_train),
        (x_test, y_test),
        optimizer=optimizer,
        epochs=config["epochs"],
        batch_size=config["batch_size"],
        seed=config["seed"],
        mode=args.mode,
        augment=functools.partial(augment, crop_padding=2, flip=True) if config["augment"] else None,
        out=args.out,
        resume=args.resume,
        config=config,
        progress=True,
        shard_params=args.shard_params,
    )
    last = result.history[-1]
    best = max(result.history, key=lambda r: r["test_accuracy"])
    minutes, seconds = divmod(round(time.perf_counter() - start), 60)
    say(
        f"finished epoch {last['epoch']}/{config['epochs']} in {minutes} min {seconds} s: "
        f"final test accuracy {last['test_accuracy']:.4f} (loss {last['test_loss']:.4f}), "
        f"best {best['test_accuracy']:.4f} (epoch {best['epoch']})"
    )
    say(
        f"wrote {args.out / 'metrics.jsonl'}, {args.out / 'curves.png'} and checkpoints in "
        f"{args.out / 'checkpoints'}"
    )


def _devices_line(args: argparse.Namespace) -> str:
    """Where the run trains, for the start banner: the device count, kind and processes."""
    platform = jax.devices()[0].platform
    line = f"{jax.device_count()} {platform} device(s)"
    if jax.process_count() > 1:
        line += f" in {jax.process_count()} processes"
    if (getattr(args, "cpu_devices_set", None) or 0) > 1 and platform == "cpu":
        line += (
            " (one per core; --cpu-devices 1 for one)" if args.cpu_devices == "auto" else " (--cpu-devices)"
        )
    if args.shard_params:
        line += ", params sharded"
    return line


def evaluate_run(args: argparse.Namespace) -> None:
    """Print the test accuracy of the newest intact checkpoint in --out.

    Restores only the parameters and the model state (no optimiser state) and
    reads only the test images.
    """
    directory = args.out / "checkpoints"
    if not checkpoint.all_steps(directory):
        raise checkpoint.CheckpointNotFoundError(f"{directory.absolute()}: no complete checkpoint found")
    step = _intact_step(directory, "evaluating")
    meta = checkpoint.read_metadata(directory, step)
    config = _saved_config(directory, step, meta)
    data = args.data or (Path(config["data"]) if config.get("data") else None)  # the run's by default
    x_test, y_test = load_test_split(data)
    if len(x_test) == 0:
        raise UsageError(f"the test split of {data or 'the Fashion-MNIST data'} holds no images")
    _with_data_shapes(config, data, x_test, y_test, y_test)
    model = MODELS[config["model"]](config["num_classes"], dtype=PRECISIONS[config["precision"]])
    shapes = jax.eval_shape(lambda k: model.init(k, tuple(config["input_shape"]))[1:], jax.random.key(0))
    part, _ = checkpoint.restore_part(directory, {"params": shapes[0], "model_state": shapes[1]}, step)
    result = evaluate(model, part["params"], part["model_state"], x_test, y_test)
    print(
        f"test accuracy: {result['accuracy']:.4f} (loss {result['loss']:.4f}; "
        f"epoch {meta['epoch']}, step {step}, {len(x_test)} images)"
    )


def print_summary(args: argparse.Namespace) -> None:
    """Print a model's per-layer output shapes and parameter counts for ``--input-shape`` images."""
    print(summary(MODELS[args.model](), (-1, *args.input_shape)))


def draw_filters(args: argparse.Namespace) -> None:
    """Apply classic filters (Sobel, Gaussian, sharpen, Laplacian, box blur) to a test image; write a PNG."""
    formats = Figure().canvas.get_supported_filetypes()
    if args.out.suffix[1:].lower() not in formats:
        raise UsageError(
            f"--out {args.out}: unknown image format {args.out.suffix or '(no suffix)'}; "
            f"use one of {', '.join('.' + f for f in sorted(formats))}"
        )
    _, _, x_test, y_test = _load_data(args.data)
    if args.index >= len(x_test):
        raise UsageError(f"--index {args.index} is out of range: there are {len(x_test)} test images")
    image = scale_images(x_test[args.index : args.index + 1])
    image = image.mean(axis=-1, keepdims=True)  # the filters are single-channel: colour becomes grey
    kernels = {
        "sobel(0)": filters.sobel(0),
        "sobel(1)": filters.sobel(1),
        "gaussian(5, 1.0)": filters.gaussian(5, 1.0),
        "sharpen()": filters.sharpen(),
        "laplacian()": filters.laplacian(),
        "box_blur(3)": filters.box_blur(3),
    }
    panels = {"original": image[0, ..., 0]}
    panels |= {name: conv(image, k, padding="SAME")[0, ..., 0] for name, k in kernels.items()}
    fig = Figure(figsize=(2.4 * len(panels), 3.0), layout="constrained")
    label = int(y_test[args.index])
    name = f"class {label}" if _is_npz(args.data) else CLASS_NAMES[label]
    fig.suptitle(f"test image {args.index}: {name}")
    axes = fig.subplots(1, len(panels))
    for ax, (name, panel) in zip(axes, panels.items(), strict=True):
        panel = np.asarray(panel)
        # One symmetric scale per response, zero at mid-grey; the image itself spans [0, 1].
        limit = max(float(np.abs(panel).max()), 1e-12)
        low, high = (0.0, 1.0) if name == "original" else (-limit, limit)
        shown = ax.imshow(panel, cmap="gray", vmin=low, vmax=high)
        fig.colorbar(shown, ax=ax, orientation="horizontal", shrink=0.8)
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")


def _train_config(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The run's settings, and what is done (``epoch``, ``step``, ``history``) when resuming.

    Defaults, replaced on --resume by the run's settings (``OUT/run.json``, which
    ``fit`` writes before a run's first step, else the newest intact checkpoint's),
    then by the arguments given. A larger --epochs extends a run.

    Raises:
      UsageError: on --resume, an argument contradicts the run's setting (a
        smaller --epochs included).
      CheckpointError: the checkpoints are damaged with none intact, or the
        run's record is unreadable.
    """
    given = {name: getattr(args, name) for name in TRAIN_DEFAULTS if getattr(args, name) is not None}
    config = dict(TRAIN_DEFAULTS)
    if not args.resume:
        return config | given, None
    directory = args.out / "checkpoints"
    step, meta, saved = None, None, None
    if checkpoint.all_steps(directory):
        step = _intact_step(directory, None, allow_unfinished=True)  # fit reports and moves the damaged
    if step is not None:
        meta = checkpoint.read_metadata(directory, step)
        saved = _saved_config(directory, step, meta)
    recorded = args.out / RUN_FILE
    if recorded.is_file():  # the run's own record: an extension's new total, or a run killed early
        try:
            record = json.loads(recorded.read_text())
        except ValueError as error:
            raise checkpoint.CheckpointMismatchError(f"{recorded}: unreadable ({error})") from None
        saved = _saved_config(recorded, step or 0, {"config": record, "epoch": 0})
    if saved is None:
        return config | given, None
    conflicts = [
        f"--{name.replace('_', '-')} {value} (checkpoint: {saved[name]})"
        for name, value in given.items()
        if saved.get(name) != value and not (name == "epochs" and value > saved["epochs"])
    ]
    if conflicts:
        raise UsageError(f"cannot resume {args.out} with different settings: {', '.join(conflicts)}")
    done = None if meta is None else {"epoch": meta["epoch"], "step": step, "history": meta["history"]}
    return config | saved | given, done


def _intact_step(directory: Path, doing: str | None, *, allow_unfinished: bool = False) -> int | None:
    """The newest intact checkpoint step; with ``doing``, each damaged newer one is reported as a warning.

    With ``allow_unfinished``, ``None`` when no step is intact but every one only
    lacks its manifest (the first save was killed before it proved itself).

    Raises:
      CheckpointDamagedError: none is intact.
    """
    step, damaged = checkpoint.latest_intact_step(directory)
    if step is None and allow_unfinished and all(checkpoint.unfinished(p) for _, p in damaged):
        return None
    if step is None:
        raise checkpoint.CheckpointDamagedError(
            f"{directory.absolute()}: no intact checkpoint: "
            + "; ".join(f"step {s} is damaged: {problem}" for s, problem in damaged)
        )
    for bad, problem in damaged if doing else ():
        warnings.warn(
            f"checkpoint step {bad} is damaged ({problem}); {doing} step {step}",
            checkpoint.DamagedCheckpointWarning,
            stacklevel=2,
        )
    return step


SETTING_CHECKS: dict[str, Any] = {
    "model": lambda v: v in MODELS,
    "epochs": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
    "batch_size": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
    "optimizer": lambda v: v in OPTIMIZERS,
    "lr": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0,
    "schedule": lambda v: v in SCHEDULES,
    "seed": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
    "precision": lambda v: v in PRECISIONS,
    "augment": lambda v: isinstance(v, bool),
    "limit": lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 1),
    "num_classes": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
    "data": lambda v: v is None or isinstance(v, str),
    "input_shape": lambda v: (
        isinstance(v, list)
        and len(v) in (3, 4, 5)
        and v[0] == -1
        and all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in v[1:])
    ),
}
"""What each stored setting must be; a checkpoint whose settings fail is incompatible."""


def _saved_config(source: Path, step: int, meta: Any) -> dict[str, Any]:
    """The command-line settings stored with a run, checked one by one.

    Raises:
      CheckpointMismatchError: they are missing or not settings this version can use.
    """
    config = meta.get("config") if isinstance(meta, dict) else None
    if not isinstance(config, dict) or not config:
        raise checkpoint.CheckpointMismatchError(
            f"{source}: checkpoint step {step} holds no settings of `funcnn train`"
        )
    bad = [
        f"{name}={config.get(name, '<missing>')!r}"
        for name, valid in SETTING_CHECKS.items()
        if name not in config or not valid(config[name])
    ]
    if bad:
        raise checkpoint.CheckpointMismatchError(
            f"{source}: checkpoint step {step} holds settings this funcnn cannot use: {', '.join(bad)}"
        )
    if not isinstance(meta.get("epoch"), int) or not isinstance(meta.get("history", []), list):
        raise checkpoint.CheckpointMismatchError(
            f"{source}: checkpoint step {step} has no epoch count or history"
        )
    return {name: config[name] for name in SETTING_CHECKS}


def _load_data(path: Path | None) -> tuple[np.ndarray, ...]:
    """Fashion-MNIST, or a ``.npz`` file, from ``path``; a split without images is bad data."""
    x_train, y_train, x_test, y_test = load_dataset(path)
    for split, images in (("training", x_train), ("test", x_test)):
        if len(images) == 0:
            raise UsageError(f"the {split} split of {path or 'the Fashion-MNIST data'} holds no images")
    return x_train, y_train, x_test, y_test


def _with_data_shapes(
    config: dict[str, Any], path: Path | None, x_train: np.ndarray, y_train: np.ndarray, y_test: np.ndarray
) -> dict[str, Any]:
    """``config`` with the model's ``input_shape`` and ``num_classes`` for this data.

    A new run takes them from the data (the class count is Fashion-MNIST's 10,
    or for a ``.npz`` file the largest label + 1, unless ``--num-classes`` says
    more); a resumed or evaluated run checks that the data still fits the stored ones.

    Raises:
      UsageError: the data does not fit (other image shape, a label past the classes).
    """
    images = x_train.shape[1:] if x_train.ndim == 4 else (*x_train.shape[1:], 1)
    input_shape = [-1, *map(int, images)]
    labels = int(max(y_train.max(initial=0), y_test.max(initial=0))) + 1
    if not _is_npz(path):
        labels = max(labels, NUM_CLASSES)
    stored = config.get("input_shape")
    if stored is not None and list(stored) != input_shape:
        raise UsageError(
            f"the data's images are {tuple(input_shape[1:])} but the run's model takes {tuple(stored[1:])}"
        )
    classes = config.get("num_classes") or labels
    if classes < labels:
        raise UsageError(f"--num-classes {classes} is below the largest label + 1 ({labels}) in the data")
    return config | {"input_shape": input_shape, "num_classes": classes}


def _is_npz(path: Path | None) -> bool:
    return path is not None and path.suffix == ".npz"


def _model_and_optimizer(config: dict[str, Any], n_train: int) -> tuple[Layer, Any]:
    """The model and optimiser a training config describes, for ``n_train`` training images."""
    steps = n_train // config["batch_size"] * config["epochs"]
    decay_steps = max(steps, 1) if config["schedule"] == "cosine" else None
    model = MODELS[config["model"]](config["num_classes"], dtype=PRECISIONS[config["precision"]])
    return model, make_optimizer(config["optimizer"], config["lr"], decay_steps=decay_steps)
