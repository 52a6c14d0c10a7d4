"""The ``funcnn`` command line: ``train``, ``evaluate``, ``summary`` and ``filters``.

Every failure is one line on stderr, no traceback, with one exit status per
kind (``EXIT_STATUS``): 0 success, 1 training diverged (a NaN, infinite or
exploding loss, or non-finite parameters), 2 bad arguments or bad data, 3 a
damaged or incompatible checkpoint, 4 an output folder that cannot be written,
5 an output folder another run is writing, 6 a process of a multi-process run
lost (the others end within seconds), 128 + the signal's number when
stopped by Ctrl-C (130), SIGTERM (143) or SIGHUP (129), at a safe point.

    funcnn train --model fashion_mnist_cnn --epochs 10 --data DIR --out runs/x
    funcnn train --out runs/x --resume
    funcnn train --coordinator 10.0.0.1:1234 --num-processes 2 --process-id 0 --out runs/x
    funcnn evaluate --out runs/x
    funcnn summary fashion_mnist_cnn
    funcnn filters --out filters.png
"""

from __future__ import annotations

import argparse
import functools
import importlib
import os
import re
import shlex
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from funcnn import __version__, interrupts, runtime
from funcnn.settings import (
    BOOLEAN,
    MODE_NAMES,
    MODEL_NAMES,
    NON_NEGATIVE_INT,
    POSITIVE_INT,
    SETTINGS,
    UsageError,
)

EXIT_STATUS = {
    "success": 0,
    "diverged": 1,
    "bad arguments or data": 2,
    "damaged or incompatible checkpoint": 3,
    "output folder cannot be written": 4,
    "output folder in use by another run": 5,
    "lost a process of a multi-process run": 6,
}
"""The exit statuses of ``funcnn``, as ``DESIGN.md`` fixes them; a stop signal gives 128 + its
number (Ctrl-C 130, SIGTERM 143, SIGHUP 129)."""

EPILOG = (
    "exit status: "
    + ", ".join(f"{code} {kind}" for kind, code in EXIT_STATUS.items())
    + ", 130/143/129 stopped by Ctrl-C/SIGTERM/SIGHUP"
)


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line on stderr, exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line.

    ``train`` and ``evaluate`` first set up the process ([`funcnn.runtime.plan`][funcnn.runtime.plan]:
    XLA:CPU's convolutions, and from a shell huge pages by re-executing), then run
    with Ctrl-C, SIGTERM and SIGHUP stopping them at a safe point. Failed or stopped
    from a shell, the process ends at once after its line (no interpreter teardown,
    which can crash while XLA still compiles or print a background thread's error).

    Args:
      argv: the arguments after the program name; ``None`` reads ``sys.argv`` (a shell).

    Returns:
      The exit status ([`EXIT_STATUS`][funcnn.cli.EXIT_STATUS]; 128 + the signal's number when stopped).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in ("train", "evaluate_run"):
        if args.command == "train":
            try:
                check_processes(args)
            except UsageError as error:
                return _fail(args.prog, error, EXIT_STATUS["bad arguments or data"])
        plan = runtime.plan(runtime.facts(), cpu_devices=None, huge_pages=argv is None)
        runtime.apply(plan, sys.orig_argv[1:] if argv is None else None)
    with interrupts.stop_signals(), warnings.catch_warnings():
        try:
            status = _run(args)
        except interrupts.Interrupted as stop:  # while JAX loads, or between the command's end and its line
            status = _fail(args.prog, _interrupted(args, stop), stop.exit_status)
        if argv is None:  # from a shell: a stop signal during the interpreter's exit changes nothing
            interrupts.ignore_stop_signals()
        if argv is None and status != EXIT_STATUS["success"]:
            sys.stdout.flush()  # then end at once: threads of JAX, XLA or orbax may still run, and
            sys.stderr.flush()  # the interpreter's teardown under them can crash or print theirs
            os._exit(status)
    return status


def _run(args: argparse.Namespace) -> int:
    """Run the command; its failure as one line on stderr and an exit status."""
    commands = importlib.import_module("funcnn.commands")  # JAX loads here, once a command runs
    checkpoint = importlib.import_module("funcnn.checkpoint")
    warnings.simplefilter("always", checkpoint.DamagedCheckpointWarning)
    warnings.showwarning = functools.partial(_warn, args.prog)
    try:
        getattr(commands, args.command)(args)
    except BaseException as error:
        status = _status(error)
        if status is None:
            raise
        if isinstance(error, KeyboardInterrupt):
            error = _interrupted(args, error)
        return _fail(args.prog, error, status)
    return EXIT_STATUS["success"]


def _interrupted(args: argparse.Namespace, stop: KeyboardInterrupt) -> str:
    """The line for a run stopped by a signal: what was kept and how to go on."""
    by = f" by {stop}" if isinstance(stop, interrupts.Interrupted) else ""
    if args.command != "train":
        return f"interrupted{by}"
    if not args.out.exists():  # removed: the run failed before its first checkpoint
        return f"interrupted{by} before the first checkpoint; nothing was saved"
    resume = shlex.join(["funcnn", "train", "--out", str(args.out), "--resume"])
    return f"interrupted{by}; continue with `{resume}`"


def check_processes(args: argparse.Namespace) -> None:
    """``--coordinator``, ``--num-processes`` and ``--process-id`` come together, the id below the count.

    Raises:
      UsageError: one is missing, the coordinator is not ``HOST:PORT``, or the id is out of range.
    """
    given = {
        "--coordinator": args.coordinator,
        "--num-processes": args.num_processes,
        "--process-id": args.process_id,
    }
    missing = [name for name, value in given.items() if value is None]
    if missing and len(missing) < len(given):
        raise UsageError(
            f"a multi-process run needs --coordinator, --num-processes and --process-id together; "
            f"missing {', '.join(missing)}"
        )
    if args.coordinator is not None and not re.fullmatch(
        r"(\[[0-9A-Fa-f:.]+\]|[^:\s\[\]]+):\d{1,5}", args.coordinator
    ):
        raise UsageError(
            f"--coordinator {args.coordinator!r} must be HOST:PORT, e.g. 10.0.0.1:1234 or [::1]:1234"
        )
    if not missing and args.process_id >= args.num_processes:
        raise UsageError(
            f"--process-id {args.process_id} must be below --num-processes {args.num_processes} "
            "(processes count from 0)"
        )


def _status(error: BaseException) -> int | None:
    """The exit status for ``error``; ``None`` for an unexpected error (a bug: its traceback shows)."""
    from funcnn.checkpoint import CheckpointError, CheckpointNotFoundError, WriteError
    from funcnn.core import LayerConfigError
    from funcnn.data import DataFileError, IDXError
    from funcnn.distributed import ProcessLostError
    from funcnn.settings import SettingsConflictError
    from funcnn.train import FolderInUseError, NonFiniteLossError

    if isinstance(error, WriteError):
        return EXIT_STATUS["output folder cannot be written"]
    if isinstance(error, FolderInUseError):
        return EXIT_STATUS["output folder in use by another run"]
    if isinstance(error, ProcessLostError):
        return EXIT_STATUS["lost a process of a multi-process run"]
    if isinstance(
        error, (UsageError, LayerConfigError, IDXError, DataFileError, CheckpointNotFoundError, OSError)
    ):
        return EXIT_STATUS["bad arguments or data"]
    if isinstance(error, (CheckpointError, SettingsConflictError)):
        return EXIT_STATUS["damaged or incompatible checkpoint"]
    if isinstance(error, NonFiniteLossError):
        return EXIT_STATUS["diverged"]
    if isinstance(error, interrupts.Interrupted):
        return error.exit_status
    if isinstance(error, KeyboardInterrupt):
        return 128 + 2
    return None


def build_parser() -> argparse.ArgumentParser:
    """The ``funcnn`` argument parser with its subcommands."""
    parser = _Parser(
        prog="funcnn", description="Convolutional networks as pure functions in JAX.", epilog=EPILOG
    )
    parser.add_argument("--version", action="version", version=f"funcnn {__version__}")
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND", parser_class=_Parser)

    train_cmd = commands.add_parser(
        "train",
        help="train a model on Fashion-MNIST",
        description="Train a model on Fashion-MNIST; write metrics, curves and checkpoints to --out.",
        epilog=EPILOG,
    )
    for setting in SETTINGS.values():
        if setting.help is None:
            continue
        if setting.kind is BOOLEAN:
            train_cmd.add_argument(
                setting.option,
                action=argparse.BooleanOptionalAction,
                help=f"{setting.help}; default: {'on' if setting.default else 'off'}",
            )
        else:
            train_cmd.add_argument(
                setting.option,
                type=setting.kind.parse,
                choices=setting.kind.choices,
                help=f"{setting.help}; default: {setting.default}",
            )
    train_cmd.add_argument(
        "--mode", choices=MODE_NAMES, default="auto", help="epoch as one scan or a loop; default: auto"
    )
    train_cmd.add_argument(
        "--cpu-devices",
        type=_cpu_devices,
        default="auto",
        metavar="N|auto",
        help="JAX CPU devices to split each batch over: auto is one per core (the most, up to the "
        "cores, that divides the batch); 1 turns it off; an XLA_FLAGS device count wins; default: auto",
    )
    train_cmd.add_argument(
        "--shard-params",
        action="store_true",
        help="split the parameters and optimiser state over the devices too (for models larger than "
        "one device); same numbers as replicated",
    )
    train_cmd.add_argument(
        "--coordinator", metavar="HOST:PORT", help="multi-process run: process 0's address (all processes)"
    )
    train_cmd.add_argument(
        "--num-processes", type=POSITIVE_INT.parse, help="multi-process run: how many processes take part"
    )
    train_cmd.add_argument(
        "--process-id", type=NON_NEGATIVE_INT.parse, help="multi-process run: this process, from 0"
    )
    train_cmd.add_argument(
        "--data",
        type=Path,
        help="folder with the Fashion-MNIST IDX files (default: $FUNCNN_DATA or the system copy), or a "
        ".npz file with x_train, y_train, x_test, y_test (images (N, H, W) or (N, H, W, C): uint8 scaled "
        "by 1/255, floating used as they are)",
    )
    train_cmd.add_argument(
        "--out", type=Path, required=True, help="output folder: metrics, curves, checkpoints"
    )
    train_cmd.add_argument(
        "--resume",
        action="store_true",
        help="continue from the newest intact checkpoint in --out; with a larger --epochs, extend the "
        "finished run (the cosine schedule is re-planned over the new total from the current step)",
    )
    train_cmd.set_defaults(command="train", prog="funcnn train")

    evaluate_cmd = commands.add_parser(
        "evaluate",
        help="test accuracy of the newest intact checkpoint",
        description="Print the test accuracy of the newest intact checkpoint in --out.",
        epilog=EPILOG,
    )
    evaluate_cmd.add_argument("--out", type=Path, required=True, help="the training run's output folder")
    evaluate_cmd.add_argument("--data", type=Path, help="folder with the IDX files, or a .npz file")
    evaluate_cmd.set_defaults(command="evaluate_run", prog="funcnn evaluate")

    export_cmd = commands.add_parser(
        "export",
        help="the trained model as a jax.export artifact",
        description="Write the newest intact checkpoint's inference function (uint8 images to logits, any "
        "batch size) as a jax.export artifact, which JAX alone loads and calls: "
        "jax.export.deserialize(open(FILE, 'rb').read()).call(images).",
        epilog=EPILOG,
    )
    export_cmd.add_argument("--out", type=Path, required=True, help="the training run's output folder")
    export_cmd.add_argument("file", type=Path, metavar="FILE", help="the artifact to write, e.g. model.jax")
    export_cmd.set_defaults(command="export_run", prog="funcnn export")

    predict_cmd = commands.add_parser(
        "predict",
        help="the classes of images, by a trained model",
        description="Print each image's three most likely classes and their probabilities, by the newest "
        "intact checkpoint in --out.",
        epilog=EPILOG,
    )
    predict_cmd.add_argument("--out", type=Path, required=True, help="the training run's output folder")
    predict_cmd.add_argument(
        "images",
        type=Path,
        nargs="*",
        metavar="IMAGES",
        help="PNG files, or a .npz file (its x_test); default: the run's test split",
    )
    predict_cmd.add_argument(
        "--count", type=POSITIVE_INT.parse, default=10, help="how many images of a split; default: 10"
    )
    predict_cmd.set_defaults(command="predict", prog="funcnn predict")

    summary_cmd = commands.add_parser(
        "summary",
        help="the layer tree: output shapes, parameters, state",
        description="Print a model's layer tree with output shapes, parameter counts and state sizes.",
    )
    summary_cmd.add_argument(
        "model", choices=MODEL_NAMES, metavar="MODEL", help=f"one of {', '.join(MODEL_NAMES)}"
    )
    summary_cmd.add_argument(
        "--input-shape",
        type=POSITIVE_INT.parse,
        nargs=3,
        default=(28, 28, 1),
        metavar=("H", "W", "C"),
        help="the image shape the model takes, e.g. 32 32 3; default: 28 28 1 (Fashion-MNIST)",
    )
    summary_cmd.add_argument(
        "--labels",
        action="store_true",
        help="list each parameter's label (for --freeze) and shape instead of the layer tree",
    )
    summary_cmd.set_defaults(command="print_summary", prog="funcnn summary")

    filters_cmd = commands.add_parser(
        "filters",
        help="classic filters applied to an image",
        description="Apply classic filters (Sobel, Gaussian, sharpen, Laplacian, box blur) to a test image; "
        "write a picture.",
    )
    filters_cmd.add_argument("--data", type=Path, help="folder with the IDX files, or a .npz file")
    filters_cmd.add_argument("--out", type=Path, required=True, help="the PNG to write")
    filters_cmd.add_argument(
        "--index", type=NON_NEGATIVE_INT.parse, default=0, help="which test image; default: 0"
    )
    filters_cmd.set_defaults(command="draw_filters", prog="funcnn filters")
    return parser


def _warn(prog: str, message: Warning | str, *args: Any, **kwargs: Any) -> None:
    """Show a warning as one line on stderr."""
    print(f"{prog}: warning: {' '.join(str(message).split())}", file=sys.stderr)


def _fail(prog: str, error: BaseException | str, status: int) -> int:
    """Print ``error`` as one line on stderr and return ``status``."""
    print(f"{prog}: error: {' '.join(str(error).split())}", file=sys.stderr)
    return status


def _cpu_devices(text: str) -> str:
    if text != "auto":
        POSITIVE_INT.parse(text)
    return text


if __name__ == "__main__":
    sys.exit(main())
