"""The commands behind ``funcnn``: ``train``, ``evaluate``, ``export``, ``predict``, ``summary``
and ``filters``.

Imported by [`funcnn.cli`][funcnn.cli] only once a command runs, so ``funcnn --help``
and ``funcnn --version`` never load JAX.
"""

from __future__ import annotations

import argparse
import functools
import time
import warnings
from pathlib import Path
from typing import Any

import jax
import numpy as np
from matplotlib.figure import Figure

from funcnn import checkpoint, checks, distributed, export, filters, labels, runtime, settings
from funcnn.core import Layer
from funcnn.data import augment, load_dataset, load_test_split, scale_images
from funcnn.data.fashion_mnist import CLASS_NAMES, NUM_CLASSES
from funcnn.models import MODELS
from funcnn.ops import conv
from funcnn.settings import UsageError
from funcnn.shapes import count_params, summary
from funcnn.train import (
    EMA,
    PRECISIONS,
    Callback,
    Checkpoints,
    EarlyStopping,
    Inspection,
    ProgressBar,
    RunFolder,
    TensorBoard,
    evaluate,
    fit,
    learning_rate_schedule,
    make_optimizer,
    with_ema,
)


def train(args: argparse.Namespace) -> None:
    """Train a model on Fashion-MNIST; write metrics, curves and checkpoints to --out.

    The steps, in order: give JAX its devices (before its backend starts), join the
    other processes of a multi-process run, take the run folder's lock, inspect it
    once and merge the settings once, load the data, build the model, and call
    ``fit`` with the run folder, the progress bar and the callbacks the settings ask for
    (``_train_callbacks``) as callbacks. Only process 0 prints.
    """
    start = time.perf_counter()
    folder = RunFolder(args.out)
    recorded = folder.settings() if args.resume else None
    args.cpu_devices_set = _set_up_devices(args, (recorded or {}).get("batch_size"))
    if args.coordinator is not None:
        distributed.join(args.coordinator, args.num_processes, args.process_id)
    say = print if jax.process_index() == 0 else lambda *_: None
    with folder.lock():
        inspection = folder.inspect()
        config, done = _train_settings(args, folder, inspection, recorded)
        data = args.data or (Path(config["data"]) if config.get("data") else None)
        config["data"] = None if data is None else str(data.absolute())
        x_train, y_train, x_test, y_test = _load_data(data)
        x_train, y_train = x_train[: config["limit"]], y_train[: config["limit"]]
        config = _with_data_shapes(config, data, x_train, y_train, y_test)
        if done is not None and done["epoch"] >= config["epochs"]:
            folder.write_outputs(done["history"], config["model"])  # repairs a kill after the last checkpoint
            say(
                f"already finished: {args.out} holds all {config['epochs']} epochs (step {done['step']}); "
                "to train longer, add --resume with a larger --epochs"
            )
            return
        stopped = _stopped_early(config, done)
        if stopped is not None:
            folder.write_outputs(done["history"], config["model"])
            say(
                f"already finished: {args.out} stopped early after epoch {done['epoch']} ({stopped}); "
                "to train on, add --resume with a larger --patience"
            )
            return
        model, optimizer, learning_rate = _model_and_optimizer(config, len(x_train))
        if config["ema"] is not None:
            optimizer = with_ema(optimizer, config["ema"])
        input_shape = tuple(config["input_shape"])
        params = count_params(jax.eval_shape(lambda k: model.init(k, input_shape)[1], jax.random.key(0)))
        say(
            f"training {config['model']} ({params:,} params) for {config['epochs']} epochs on "
            f"{_devices_line(args)}; data: {len(x_train):,} training and {len(x_test):,} test images from "
            f"{data or 'the default Fashion-MNIST'}; output: {args.out}"
        )
        if done is not None:
            say(f"resuming from epoch {done['epoch']} (step {done['step']})")
        initial = _initial_from(config, model, input_shape) if done is None and config["init_from"] else None
        callbacks = _train_callbacks(config, args, folder, model, (x_test, y_test), learning_rate)
        with distributed.reporting_lost_processes():
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
                shard_params=args.shard_params,
                callbacks=callbacks,
                trainable=_trainable(config, model, input_shape),
                initial=initial,
            )
    last = result.history[-1]
    best = max(result.history, key=lambda r: r["test_accuracy"])
    minutes, seconds = divmod(round(time.perf_counter() - start), 60)
    say(
        f"finished epoch {last['epoch']}/{config['epochs']} in {minutes} min {seconds} s: "
        f"final test accuracy {last['test_accuracy']:.4f} (loss {last['test_loss']:.4f}), "
        f"best {best['test_accuracy']:.4f} (epoch {best['epoch']})"
    )
    for callback in callbacks if last["epoch"] < config["epochs"] else ():
        if isinstance(callback, EarlyStopping) and callback.stopped is not None:
            say(f"stopped early after epoch {last['epoch']}: {callback.stopped} (--patience)")
    say(f"wrote {folder.metrics_path}, {folder.curves_path} and checkpoints in {folder.checkpoints}")


MONITOR = "test_accuracy"
"""What ``--patience`` and ``--keep-best`` watch."""


def _train_callbacks(
    config: dict[str, Any],
    args: argparse.Namespace,
    folder: RunFolder,
    model: Layer,
    test_data: tuple[np.ndarray, np.ndarray],
    learning_rate: Any,
) -> list[Callback]:
    """``fit``'s callbacks for a run's settings, in the order they must run: the EMA's
    evaluation (``--ema``) completes each epoch's record before
    [`Checkpoints`][funcnn.train.callbacks.Checkpoints] saves it;
    early stopping (``--patience``) and TensorBoard (``--tensorboard``, in ``OUT/tensorboard``)
    read it after, TensorBoard knowing the epochs restored; the progress bar shows it last.

    Raises:
      UsageError: ``--tensorboard`` without the tensorboardX package.
    """
    callbacks: list[Callback] = []
    if config["ema"] is not None:
        callbacks.append(EMA(model, test_data, mesh=distributed.data_mesh()))
    best = MONITOR if config["keep_best"] else None
    callbacks.append(Checkpoints(folder, resume=args.resume, config=config, keep_best=best))
    if config["patience"] is not None:
        callbacks.append(EarlyStopping(config["patience"], monitor=MONITOR))
    if config["tensorboard"]:
        try:
            callbacks.append(TensorBoard(folder.path / "tensorboard", learning_rate=learning_rate))
        except ImportError as error:
            raise UsageError(f"--tensorboard: {error}") from None
    return [*callbacks, ProgressBar()]


def _stopped_early(config: dict[str, Any], done: dict[str, Any] | None) -> str | None:
    """Why a resumed run already stopped early (its history and ``--patience`` say so), or ``None``."""
    if done is None or config["patience"] is None:
        return None
    return EarlyStopping(config["patience"], monitor=MONITOR).reason(done["history"])


def _set_up_devices(args: argparse.Namespace, recorded_batch: Any) -> int | None:
    """One CPU device per core (or ``--cpu-devices``) for this run, set in JAX's config before its
    backend starts ([`funcnn.runtime.plan`][funcnn.runtime.plan]); the count set, or ``None``. The batch to
    split
    is the one given, else the run's recorded one, else the default."""
    batch = args.batch_size or (recorded_batch if settings.POSITIVE_INT.valid(recorded_batch) else None)
    plan = runtime.configure(
        batch_size=batch or settings.TRAIN_DEFAULTS["batch_size"],
        cpu_devices=args.cpu_devices if args.cpu_devices == "auto" else int(args.cpu_devices),
        processes=args.num_processes or 1,
        coordinator=args.coordinator,
        cpu_convolutions=False,
        huge_pages=False,
    )
    for note in plan.skipped:
        warnings.warn(f"--cpu-devices: {note}", UserWarning, stacklevel=2)
    return plan.cpu_devices


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

    Takes no lock: a run may be training into --out. Reads only the test images.
    """
    model, part, meta, step = _newest_model(args.out, doing="evaluating")
    config = meta["config"]
    data = args.data or (Path(config["data"]) if config.get("data") else None)  # the run's by default
    x_test, y_test = load_test_split(data)
    if len(x_test) == 0:
        raise UsageError(f"the test split of {data or 'the Fashion-MNIST data'} holds no images")
    _with_data_shapes(config, data, x_test, y_test, y_test)
    result = evaluate(model, part["params"], part["model_state"], x_test, y_test)
    print(
        f"test accuracy: {result['accuracy']:.4f} (loss {result['loss']:.4f}; "
        f"epoch {meta['epoch']}, step {step}, {len(x_test)} images)"
    )


def export_run(args: argparse.Namespace) -> None:
    """Write the newest intact checkpoint's inference function (raw images to logits) as a
    ``jax.export`` artifact ([`funcnn.export`][funcnn.export]): callable with JAX alone, any batch size."""
    model, part, meta, step = _newest_model(args.out, doing="exporting")
    exported = export.export(model, part["params"], part["model_state"], _image_shape(meta["config"]))
    path = export.save(exported, args.file)
    shape = " x ".join(map(str, _image_shape(meta["config"])))
    print(
        f"wrote {path} ({path.stat().st_size:,} bytes): uint8 images (batch x {shape}) to "
        f"{meta['config']['num_classes']} logits; epoch {meta['epoch']}, step {step}"
    )


def predict(args: argparse.Namespace) -> None:
    """Print each image's most likely classes and their probabilities, by the newest intact
    checkpoint in --out: PNG files, a ``.npz`` file's test images, or the run's test split."""
    model, part, meta, step = _newest_model(args.out, doing="predicting")
    config = meta["config"]
    names, images = _images_to_predict(args, config)
    expected = _image_shape(config)
    if images.shape[1:] != expected:
        raise UsageError(
            f"the images are {' x '.join(map(str, images.shape[1:]))} but the run's model takes "
            f"{' x '.join(map(str, expected))} images"
        )
    logits = export.inference(model, part["params"], part["model_state"])(images)
    classes = _class_names(config)
    for name, row in zip(names, export.probabilities(logits), strict=True):
        best = np.argsort(row)[::-1][: min(3, len(row))]
        ranked = ", ".join(f"{classes[i]} {row[i]:.3f}" for i in best)
        print(f"{name}: {ranked}")


def _trainable(config: dict[str, Any], model: Layer, input_shape: tuple[int, ...]) -> Any:
    """``fit``'s ``trainable`` for ``--freeze``: the mask of the parameters no pattern matches."""
    if config["freeze"] is None:
        return None
    patterns = [pattern.strip() for pattern in config["freeze"].split(",")]
    frozen = labels.matching(labels.param_labels(model, input_shape), *patterns)
    return jax.tree.map(lambda is_frozen: not is_frozen, frozen)


def _initial_from(config: dict[str, Any], model: Layer, input_shape: tuple[int, ...]) -> tuple[Any, Any]:
    """``--init-from``: the params and model state of that run's newest intact checkpoint, or of a
    PyTorch ``state_dict`` file (``.pt``/``.pth``, [`funcnn.interop.from_torch`][funcnn.interop.from_torch]),
    checked
    against this run's model."""
    source = Path(config["init_from"])
    if source.suffix in TORCH_SUFFIXES:
        from funcnn.interop import from_torch  # noqa: PLC0415 (torch loads only for its files)

        try:
            initial = from_torch(model, input_shape, source)
        except ImportError as error:
            raise UsageError(f"--init-from {source}: {error}") from None
    else:
        _, part, _, _ = _newest_model(source, doing="initialising from")
        initial = (part["params"], part["model_state"])
    expected = jax.eval_shape(lambda k: model.init(k, input_shape)[1:], jax.random.key(0))
    checks.same_tree("funcnn train", "--init-from", initial, expected)
    return initial


def _image_shape(config: dict[str, Any]) -> tuple[int, ...]:
    """One raw image's shape for a run's model: ``(H, W)`` for one channel (as Fashion-MNIST's
    files hold them), else ``(H, W, C)``."""
    height, width, channels = config["input_shape"][1:]
    return (height, width) if channels == 1 else (height, width, channels)


def _class_names(config: dict[str, Any]) -> tuple[str, ...]:
    """Fashion-MNIST's class names for a run on it, else ``class 0``, ``class 1``, ..."""
    if config.get("data") and _is_npz(Path(config["data"])) or config["num_classes"] != NUM_CLASSES:
        return tuple(f"class {i}" for i in range(config["num_classes"]))
    return CLASS_NAMES


def _images_to_predict(args: argparse.Namespace, config: dict[str, Any]) -> tuple[list[str], np.ndarray]:
    """The images ``predict`` was given, as ``uint8`` (names, images): PNG files, a ``.npz``
    file's test images, or the run's own test split; the first ``--count`` of a split."""
    paths = args.images
    if paths and all(path.suffix.lower() == ".png" for path in paths):
        from matplotlib.image import imread  # noqa: PLC0415 (only predict reads pictures)

        pictures = []
        for path in paths:
            picture = imread(path)
            picture = picture[..., :3] if picture.ndim == 3 else picture  # drop alpha
            if picture.ndim == 3 and config["input_shape"][-1] == 1:
                picture = picture.mean(axis=-1)  # colour to grey for a one-channel model
            if picture.dtype.kind == "f":  # PNG pixels read as [0, 1]
                picture = np.round(picture * 255).astype(np.uint8)
            pictures.append(picture)
        shapes = {picture.shape for picture in pictures}
        if len(shapes) > 1:
            raise UsageError(f"the PNG files have different sizes: {sorted(shapes)}")
        return [str(path) for path in paths], np.stack(pictures)
    if len(paths) > 1 or (paths and not _is_npz(paths[0])):
        raise UsageError("IMAGES must be PNG files or one .npz file (its test images)")
    data = paths[0] if paths else (Path(config["data"]) if config.get("data") else None)
    x_test, _ = load_test_split(data)
    count = min(args.count, len(x_test))
    return [f"test image {i}" for i in range(count)], np.asarray(x_test[:count])


def _newest_model(out: Path, *, doing: str) -> tuple[Layer, dict[str, Any], dict[str, Any], int]:
    """The model of the newest intact checkpoint in ``out``, its ``params`` and ``model_state``,
    its metadata and its step.

    Takes no lock: a run may be training into ``out``. Restores no optimiser state. A step
    still being written is skipped, and so is one pruned while it is read (the folder is
    inspected again); only a damaged step is reported.
    """
    folder = RunFolder(out, writes=False)
    attempts = 0
    while True:
        inspection = folder.inspect()
        step = folder.intact_step(inspection, doing=doing)
        if step is None:
            raise checkpoint.CheckpointNotFoundError(
                f"{folder.checkpoints.absolute()}: no complete checkpoint found"
            )
        try:
            return (*_restore_for_evaluation(folder, step), step)
        except Exception:
            attempts += 1
            unchanged = checkpoint.all_steps(folder.checkpoints) == list(inspection.steps)
            if unchanged or attempts == READ_ATTEMPTS:
                raise
            folder.forget()  # a run saved or pruned a step meanwhile: look again


def _restore_for_evaluation(folder: RunFolder, step: int) -> tuple[Layer, dict[str, Any], dict[str, Any]]:
    """The model of checkpoint ``step``, its ``params`` and ``model_state``, and its metadata
    (with the settings checked)."""
    meta = folder.metadata(step)
    config = settings.check_stored(f"checkpoint step {step} in {folder.checkpoints}", meta.get("config"))
    model = MODELS[config["model"]](config["num_classes"], dtype=PRECISIONS[config["precision"]])
    shapes = jax.eval_shape(lambda k: model.init(k, tuple(config["input_shape"]))[1:], jax.random.key(0))
    target = {"params": shapes[0], "model_state": shapes[1]}
    part, _ = checkpoint.restore_part(folder.checkpoints, target, step, verify=False)
    return model, part, meta | {"config": config}


TORCH_SUFFIXES = (".pt", ".pth")
"""The suffixes ``--init-from`` reads as a PyTorch ``state_dict`` rather than a run folder."""

READ_ATTEMPTS = 5
"""How often ``evaluate`` looks again when a run saving into the folder changes it while it reads."""


def print_summary(args: argparse.Namespace) -> None:
    """Print a model's per-layer output shapes and parameter counts for ``--input-shape`` images;
    with ``--labels``, each parameter's label ([`funcnn.labels`][funcnn.labels]) and shape instead."""
    model, input_shape = MODELS[args.model](), (-1, *args.input_shape)
    if not args.labels:
        print(summary(model, input_shape))
        return
    params = jax.eval_shape(lambda k: model.init(k, input_shape)[1], jax.random.key(0))
    names = jax.tree.leaves(labels.tree_labels(model, params))
    width = max(map(len, names))
    for name, leaf in zip(names, jax.tree.leaves(params), strict=True):
        print(f"{name.ljust(width)}  {tuple(leaf.shape)}")


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


def _train_settings(
    args: argparse.Namespace, folder: RunFolder, inspection: Inspection, recorded: dict[str, Any] | None
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The run's settings ([`funcnn.settings.merge`][funcnn.settings.merge]), and what is done (``epoch``,
    ``step``, ``history``) when resuming.

    On --resume the run's own settings are ``run.json``'s (``recorded``) and the newest
    intact checkpoint's, which must agree; then the arguments given, which must not
    contradict them (a larger --epochs extends the run).

    Raises:
      UsageError: an argument contradicts the run's setting.
      SettingsConflictError: ``run.json`` and the checkpoint disagree, or either is unusable.
      CheckpointDamagedError: the checkpoints are damaged with none intact.
    """
    given = {name: getattr(args, name) for name in settings.TRAIN_DEFAULTS if getattr(args, name) is not None}
    if not args.resume:
        return settings.merge(given), None
    step = folder.intact_step(inspection, doing=None)
    meta = None if step is None else folder.metadata(step)
    stored = None if meta is None else (f"checkpoint step {step} in {folder.checkpoints}", meta.get("config"))
    config = settings.merge(
        given, None if recorded is None else (str(folder.settings_path), recorded), stored
    )
    if meta is None:
        return config, None
    if not isinstance(meta.get("epoch"), int) or not isinstance(meta.get("history"), list):
        raise settings.SettingsConflictError(f"{stored[0]} has no epoch count or history")
    return config, {"epoch": meta["epoch"], "step": step, "history": meta["history"]}


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


def _model_and_optimizer(config: dict[str, Any], n_train: int) -> tuple[Layer, Any, Any]:
    """The model, optimiser and learning-rate schedule a training config describes, for
    ``n_train`` training images."""
    steps = n_train // config["batch_size"] * config["epochs"]
    decay_steps = max(steps, 1) if config["schedule"] == "cosine" else None
    model = MODELS[config["model"]](config["num_classes"], dtype=PRECISIONS[config["precision"]])
    optimizer = make_optimizer(config["optimizer"], config["lr"], decay_steps=decay_steps)
    return model, optimizer, learning_rate_schedule(config["lr"], decay_steps)
