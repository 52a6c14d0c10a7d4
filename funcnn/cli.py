"""The ``funcnn`` command line: ``train``, ``evaluate``, ``summary`` and ``filters``.

A bad argument or bad data exits with status 2 and one line on stderr; a
diverged training run (NaN or infinite loss) exits with status 1.

    funcnn train --model fashion_mnist_cnn --epochs 10 --data DIR --out runs/x
    funcnn train --out runs/x --resume
    funcnn evaluate --out runs/x
    funcnn summary fashion_mnist_cnn
    funcnn filters --out filters.png
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
from matplotlib.figure import Figure

from funcnn import checkpoint, filters
from funcnn.core import Layer, LayerConfigError
from funcnn.data import IDXError, augment, load_fashion_mnist, scale_images
from funcnn.models import INPUT_SHAPE, MODELS
from funcnn.ops import conv
from funcnn.shapes import summary
from funcnn.train import MODES, OPTIMIZERS, PRECISIONS, NonFiniteLossError, evaluate, fit, make_optimizer
from funcnn.train.state import TrainState, abstract_train_state

TRAIN_DEFAULTS: dict[str, Any] = {
    "model": "fashion_mnist_cnn",
    "epochs": 10,
    "batch_size": 128,
    "optimizer": "adam",
    "lr": 1e-3,
    "schedule": "cosine",
    "seed": 0,
    "precision": "fp32",
    "augment": False,
    "limit": None,
}
"""The training settings; with ``--resume`` the checkpoint's settings replace these."""

SCHEDULES = ("cosine", "constant")

USAGE_ERRORS = (LayerConfigError, IDXError, checkpoint.CheckpointError, OSError)
"""Errors reported as one line with exit status 2 (bad arguments, files or data)."""


class UsageError(ValueError):
    """A bad combination of command-line arguments."""


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line on stderr, exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line.

    Args:
      argv: the arguments after the program name; ``None`` reads ``sys.argv``.

    Returns:
      The exit status: 0 on success, 1 when training diverged, 2 for bad
      arguments or data.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except (UsageError, *USAGE_ERRORS) as error:
        return _fail(args.prog, error, 2)
    except NonFiniteLossError as error:
        return _fail(args.prog, error, 1)
    except KeyboardInterrupt:
        return _fail(args.prog, "interrupted; continue with `funcnn train --out DIR --resume`", 130)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``funcnn`` argument parser with its four subcommands."""
    parser = _Parser(prog="funcnn", description="Convolutional networks as pure functions in JAX.")
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND", parser_class=_Parser)

    train_cmd = commands.add_parser(
        "train", help="train a model on Fashion-MNIST", description=_train.__doc__
    )
    train_cmd.add_argument("--model", choices=sorted(MODELS), help=_default("model"))
    train_cmd.add_argument("--epochs", type=_positive_int, help=_default("epochs"))
    train_cmd.add_argument("--batch-size", type=_positive_int, help=_default("batch_size"))
    train_cmd.add_argument("--optimizer", choices=OPTIMIZERS, help=_default("optimizer"))
    train_cmd.add_argument("--lr", type=_positive_float, help="peak learning rate; " + _default("lr"))
    train_cmd.add_argument(
        "--schedule", choices=SCHEDULES, help="learning-rate schedule; " + _default("schedule")
    )
    train_cmd.add_argument("--seed", type=_non_negative_int, help=_default("seed"))
    train_cmd.add_argument(
        "--precision", choices=sorted(PRECISIONS), help="compute dtype; " + _default("precision")
    )
    train_cmd.add_argument(
        "--augment", action=argparse.BooleanOptionalAction, help="random crop and flip; default: off"
    )
    train_cmd.add_argument("--limit", type=_positive_int, help="use only the first N training images")
    train_cmd.add_argument(
        "--mode", choices=MODES, default="auto", help="epoch as one scan or a loop; default: auto"
    )
    train_cmd.add_argument(
        "--data", type=Path, help="folder with the IDX files (default: $FUNCNN_DATA or the system copy)"
    )
    train_cmd.add_argument(
        "--out", type=Path, required=True, help="output folder: metrics, curves, checkpoints"
    )
    train_cmd.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    train_cmd.set_defaults(run=_train, prog="funcnn train")

    evaluate_cmd = commands.add_parser(
        "evaluate", help="test accuracy of the last checkpoint", description=_evaluate.__doc__
    )
    evaluate_cmd.add_argument("--out", type=Path, required=True, help="the training run's output folder")
    evaluate_cmd.add_argument("--data", type=Path, help="folder with the IDX files")
    evaluate_cmd.set_defaults(run=_evaluate, prog="funcnn evaluate")

    summary_cmd = commands.add_parser(
        "summary", help="per-layer shapes and parameter counts", description=_summary.__doc__
    )
    summary_cmd.add_argument(
        "model", choices=sorted(MODELS), metavar="MODEL", help=f"one of {', '.join(sorted(MODELS))}"
    )
    summary_cmd.set_defaults(run=_summary, prog="funcnn summary")

    filters_cmd = commands.add_parser(
        "filters", help="classic filters applied to an image", description=_filters.__doc__
    )
    filters_cmd.add_argument("--data", type=Path, help="folder with the IDX files")
    filters_cmd.add_argument("--out", type=Path, required=True, help="the PNG to write")
    filters_cmd.add_argument(
        "--index", type=_non_negative_int, default=0, help="which test image; default: 0"
    )
    filters_cmd.set_defaults(run=_filters, prog="funcnn filters")
    return parser


def _train(args: argparse.Namespace) -> None:
    """Train a model on Fashion-MNIST; write metrics, curves and checkpoints to --out."""
    config = _train_config(args)
    x_train, y_train, x_test, y_test = load_fashion_mnist(args.data)
    x_train, y_train = x_train[: config["limit"]], y_train[: config["limit"]]
    if config["batch_size"] > len(x_train):
        raise UsageError(f"--batch-size {config['batch_size']} exceeds the {len(x_train)} training images")
    model, optimizer = _model_and_optimizer(config, len(x_train))
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
        precision=config["precision"],
        out=args.out,
        resume=args.resume,
        config=config,
        progress=True,
    )
    last = result.history[-1]
    accuracy, loss = last["test_accuracy"], last["test_loss"]
    print(f"final test accuracy: {accuracy:.4f} (epoch {last['epoch']}, test loss {loss:.4f})")


def _evaluate(args: argparse.Namespace) -> None:
    """Print the test accuracy of the last checkpoint in --out."""
    directory = args.out / "checkpoints"
    meta = checkpoint.read_metadata(directory)
    config = _saved_config(directory, meta)
    x_train, _, x_test, y_test = load_fashion_mnist(args.data)
    model, optimizer = _model_and_optimizer(config, len(x_train[: config["limit"]]))
    target = abstract_train_state(model, optimizer, INPUT_SHAPE)
    state: TrainState = checkpoint.restore(directory, target)[0]
    result = evaluate(model, state.params, state.model_state, x_test, y_test, precision=config["precision"])
    print(
        f"test accuracy: {result['accuracy']:.4f} (loss {result['loss']:.4f}; "
        f"epoch {meta['epoch']}, step {int(state.step)}, {len(x_test)} images)"
    )


def _summary(args: argparse.Namespace) -> None:
    """Print a model's per-layer output shapes and parameter counts."""
    print(summary(MODELS[args.model](), INPUT_SHAPE))


def _filters(args: argparse.Namespace) -> None:
    """Apply classic filters (Sobel, Gaussian, sharpen, Laplacian, box blur) to a test image; write a PNG."""
    _, _, x_test, _ = load_fashion_mnist(args.data)
    if args.index >= len(x_test):
        raise UsageError(f"--index {args.index} is out of range: there are {len(x_test)} test images")
    image = scale_images(x_test[args.index : args.index + 1])
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
    fig = Figure(figsize=(2.2 * len(panels), 2.6), layout="constrained")
    axes = fig.subplots(1, len(panels))
    for ax, (name, panel) in zip(axes, panels.items(), strict=True):
        ax.imshow(np.asarray(panel), cmap="gray")
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")


def _train_config(args: argparse.Namespace) -> dict[str, Any]:
    """The run's settings: defaults, replaced by the checkpoint's on --resume, then by the arguments given.

    Raises:
      UsageError: on --resume, an argument contradicts the checkpoint's setting.
    """
    given = {name: getattr(args, name) for name in TRAIN_DEFAULTS if getattr(args, name) is not None}
    config = dict(TRAIN_DEFAULTS)
    directory = args.out / "checkpoints"
    if args.resume and checkpoint.latest_step(directory) is not None:
        saved = _saved_config(directory, checkpoint.read_metadata(directory))
        conflicts = [
            f"--{name.replace('_', '-')} {value} (checkpoint: {saved[name]})"
            for name, value in given.items()
            if saved.get(name) != value
        ]
        if conflicts:
            raise UsageError(f"cannot resume {args.out} with different settings: {', '.join(conflicts)}")
        config |= saved
    return config | given


def _saved_config(directory: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """The command-line settings stored in a checkpoint's metadata."""
    if not meta.get("config"):
        raise UsageError(f"{directory}: the checkpoint holds no settings of `funcnn train`")
    return meta["config"]


def _model_and_optimizer(config: dict[str, Any], n_train: int) -> tuple[Layer, Any]:
    """The model and optimiser a training config describes, for ``n_train`` training images."""
    steps = n_train // config["batch_size"] * config["epochs"]
    decay_steps = max(steps, 1) if config["schedule"] == "cosine" else None
    return MODELS[config["model"]](), make_optimizer(
        config["optimizer"], config["lr"], decay_steps=decay_steps
    )


def _default(name: str) -> str:
    return f"default: {TRAIN_DEFAULTS[name]}"


def _fail(prog: str, error: BaseException | str, status: int) -> int:
    """Print ``error`` as one line on stderr and return ``status``."""
    print(f"{prog}: error: {' '.join(str(error).split())}", file=sys.stderr)
    return status


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


if __name__ == "__main__":
    sys.exit(main())
