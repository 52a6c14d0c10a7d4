"""The ``funcnn`` command line: ``train``, ``evaluate``, ``summary`` and ``filters``.

Every failure is one line on stderr, no traceback, with one exit status per
kind (``EXIT_STATUS``): 0 success, 1 training diverged (a NaN, infinite or
exploding loss, or non-finite parameters), 2 bad arguments or bad data, 3 a
damaged or incompatible checkpoint, 130 interrupted.

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
import importlib.metadata
import itertools
import json
import math
import os
import platform
import shutil
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from funcnn import __version__
from funcnn.settings import (
    MODE_NAMES,
    MODEL_NAMES,
    OPTIMIZER_NAMES,
    PRECISION_NAMES,
    SCHEDULES,
    TRAIN_DEFAULTS,
    UsageError,
)

EXIT_STATUS = {
    "success": 0,
    "diverged": 1,
    "bad arguments or data": 2,
    "damaged or incompatible checkpoint": 3,
}
"""The exit statuses of ``funcnn``, as ``DESIGN.md`` fixes them (130 when interrupted)."""

HUGE_PAGES = "glibc.malloc.hugetlb=1"
"""The ``GLIBC_TUNABLES`` value ``train`` and ``evaluate`` run under: malloc's large blocks on transparent
huge pages (see :func:`use_huge_pages`)."""

CPU_CONVOLUTIONS = "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"
"""The XLA flag ``train`` and ``evaluate`` run under: XLA:CPU's convolutions rather than YNNPACK's
(see :func:`use_cpu_convolutions`)."""

CPU_CONVOLUTIONS_SINCE = (0, 10, 1)
"""The oldest jaxlib known to have the flag of :data:`CPU_CONVOLUTIONS` (XLA aborts on a flag it lacks)."""

EPILOG = (
    "exit status: " + ", ".join(f"{code} {kind}" for kind, code in EXIT_STATUS.items()) + ", 130 interrupted"
)


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line on stderr, exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line.

    Args:
      argv: the arguments after the program name; ``None`` reads ``sys.argv``.

    Returns:
      The exit status (:data:`EXIT_STATUS`; 130 when interrupted).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in ("train", "evaluate_run"):
        if argv is None:
            use_huge_pages()
        use_cpu_convolutions()
    if args.command == "train":
        try:
            check_processes(args)
        except UsageError as error:
            return _fail(args.prog, error, EXIT_STATUS["bad arguments or data"])
        args.cpu_devices_set = use_cpu_cores(args)
    commands = importlib.import_module("funcnn.commands")  # JAX loads here, once a command runs
    checkpoint = importlib.import_module("funcnn.checkpoint")
    out = getattr(args, "out", None)
    fresh_out = out is not None and args.command == "train" and not out.exists()
    fresh_out = fresh_out and not getattr(args, "process_id", None)  # of several processes, 0 cleans up
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always", checkpoint.DamagedCheckpointWarning)
            warnings.showwarning = functools.partial(_warn, args.prog)
            getattr(commands, args.command)(args)
    except BaseException as error:
        removed = fresh_out and checkpoint.latest_step(out / "checkpoints") is None
        if removed:
            shutil.rmtree(out, ignore_errors=True)  # a run that failed before its first checkpoint
        status = _status(error)
        if status is None:
            raise
        if isinstance(error, KeyboardInterrupt):
            resume = f"; continue with `funcnn train --out {out} --resume`" if args.command == "train" else ""
            error = (
                "interrupted before the first checkpoint; nothing was saved"
                if removed
                else f"interrupted{resume}"
            )
        return _fail(args.prog, error, status)
    return EXIT_STATUS["success"]


def check_processes(args: argparse.Namespace) -> None:
    """``--coordinator``, ``--num-processes`` and ``--process-id`` come together, the id below the count.

    Raises:
      UsageError: one is missing, or the id is out of range.
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
    if not missing and args.process_id >= args.num_processes:
        raise UsageError(
            f"--process-id {args.process_id} must be below --num-processes {args.num_processes} "
            "(processes count from 0)"
        )


def use_huge_pages() -> None:
    """Re-execute this command with ``GLIBC_TUNABLES`` set to :data:`HUGE_PAGES`, before JAX loads.

    XLA:CPU allocates a step's buffers with malloc on every call; blocks that
    large are fresh ``mmap`` pages each time, and the page faults cost about a
    tenth of a step of the CIFAR-shaped benchmark net (``benchmarks/README.md``).
    glibc reads its tunables only at process start, hence the ``exec`` (same
    process id, same arguments). Nothing happens when ``GLIBC_TUNABLES`` is
    already set (the user's setting wins; set it empty to opt out), off glibc,
    or once JAX is imported. Library users set it in their shell
    (``README.md``).
    """
    if "GLIBC_TUNABLES" in os.environ or "jax" in sys.modules or platform.libc_ver()[0] != "glibc":
        return
    sys.stdout.flush()
    sys.stderr.flush()
    environment = {**os.environ, "GLIBC_TUNABLES": HUGE_PAGES}
    os.execve(sys.executable, [sys.executable, "-m", "funcnn.cli", *sys.argv[1:]], environment)


def use_cpu_convolutions() -> bool:
    """Add :data:`CPU_CONVOLUTIONS` to ``XLA_FLAGS`` before JAX starts; return whether it was added.

    jaxlib 0.10 hands each convolution to YNNPACK, whose kernels on a CPU
    without AVX-512 run the weight gradient (``dL/dK``, the convolution whose
    "kernel" is the whole image) at about half the rate of XLA:CPU's own: on
    a 2-core AVX2 machine the CIFAR-shaped benchmark net trains 1.2-1.5x
    faster without them, and the Fashion-MNIST CNN the same within noise
    (``benchmarks/README.md``). YNNPACK keeps the matrix products. Nothing
    happens when ``XLA_FLAGS`` already names the flag (the user's setting
    wins), once JAX is imported (:func:`main` called from Python), or with a
    jaxlib older than :data:`CPU_CONVOLUTIONS_SINCE` or none installed.
    Library users set it in their shell (``README.md``).
    """
    flags = os.environ.get("XLA_FLAGS", "")
    flag_name = CPU_CONVOLUTIONS.split("=")[0]
    if flag_name in flags or "jax" in sys.modules or _jaxlib_version() < CPU_CONVOLUTIONS_SINCE:
        return False
    os.environ["XLA_FLAGS"] = f"{flags} {CPU_CONVOLUTIONS}".strip()
    return True


def _jaxlib_version() -> tuple[int, ...]:
    """The installed jaxlib's ``(major, minor, patch)``, read without importing it; ``()`` if none."""
    try:
        release = importlib.metadata.version("jaxlib")
    except importlib.metadata.PackageNotFoundError:
        return ()
    numbers = []
    for part in release.split(".")[:3]:
        digits = "".join(itertools.takewhile(str.isdigit, part))
        if not digits:
            break
        numbers.append(int(digits))
    return tuple(numbers)


def use_cpu_cores(args: argparse.Namespace) -> int | None:
    """Give JAX one CPU device per core for this run, before JAX starts; return the count set.

    XLA:CPU runs each convolution on one core, so a data-parallel run over one
    device per core is how a step uses every core. The count is the largest one
    not above the cores this process may run on (with several processes on a
    machine, its share) whose product with the process count divides the batch.
    Nothing is set (``None``) with ``--cpu-devices`` other than ``auto`` (an
    explicit count is set as given), when ``XLA_FLAGS`` already sets a device
    count (the user's setting wins), or when JAX is already imported in this process
    (:func:`main` called from Python: set ``XLA_FLAGS`` before importing JAX there).
    On a machine with an accelerator, JAX trains on that and the CPU count is unused.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" in flags or "jax" in sys.modules:
        if args.cpu_devices != "auto":
            why = "JAX is already imported" if "jax" in sys.modules else "XLA_FLAGS sets a device count"
            _warn(args.prog, f"--cpu-devices {args.cpu_devices} ignored: {why}")
        return None
    processes = args.num_processes or 1
    if args.cpu_devices == "auto":
        recorded = _recorded_batch_size(args.out) if args.resume else None
        batch = args.batch_size or recorded or TRAIN_DEFAULTS["batch_size"]
        count = cpu_devices_for(batch, processes, cores=_cores() // _processes_here(args))
    else:
        count = int(args.cpu_devices)
    os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={count}".strip()
    return count


def cpu_devices_for(batch: int, processes: int = 1, *, cores: int | None = None) -> int:
    """The most CPU devices per process, up to ``cores`` (default: this process's), that split a
    global ``batch`` evenly over ``processes`` processes; at least 1."""
    cores = max(_cores() if cores is None else cores, 1)
    return max(d for d in range(1, cores + 1) if batch % (d * processes) == 0 or d == 1)


def _cores() -> int:
    """The cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _processes_here(args: argparse.Namespace) -> int:
    """Processes of this run sharing this machine's cores: all of them when the coordinator is local."""
    if args.coordinator and args.coordinator.rsplit(":", 1)[0] in ("127.0.0.1", "localhost", "::1", "[::1]"):
        return args.num_processes
    return 1


def _recorded_batch_size(out: Path) -> int | None:
    """The batch size a resumed run recorded in ``OUT/run.json``, if readable."""
    try:
        value = json.loads((out / "run.json").read_text()).get("batch_size")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, int) and value >= 1 else None


def _status(error: BaseException) -> int | None:
    """The exit status for ``error``; ``None`` for an unexpected error (a bug: its traceback shows)."""
    from funcnn.checkpoint import CheckpointError, CheckpointNotFoundError
    from funcnn.core import LayerConfigError
    from funcnn.data import DataFileError, IDXError
    from funcnn.train import NonFiniteLossError

    if isinstance(
        error, (UsageError, LayerConfigError, IDXError, DataFileError, CheckpointNotFoundError, OSError)
    ):
        return EXIT_STATUS["bad arguments or data"]
    if isinstance(error, CheckpointError):
        return EXIT_STATUS["damaged or incompatible checkpoint"]
    if isinstance(error, NonFiniteLossError):
        return EXIT_STATUS["diverged"]
    if isinstance(error, KeyboardInterrupt):
        return 130
    return None


def build_parser() -> argparse.ArgumentParser:
    """The ``funcnn`` argument parser with its four subcommands."""
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
    train_cmd.add_argument("--model", choices=MODEL_NAMES, help=_default("model"))
    train_cmd.add_argument("--epochs", type=_positive_int, help=_default("epochs"))
    train_cmd.add_argument("--batch-size", type=_positive_int, help=_default("batch_size"))
    train_cmd.add_argument("--optimizer", choices=OPTIMIZER_NAMES, help=_default("optimizer"))
    train_cmd.add_argument("--lr", type=_positive_float, help="peak learning rate; " + _default("lr"))
    train_cmd.add_argument(
        "--schedule", choices=SCHEDULES, help="learning-rate schedule; " + _default("schedule")
    )
    train_cmd.add_argument("--seed", type=_non_negative_int, help=_default("seed"))
    train_cmd.add_argument(
        "--precision", choices=PRECISION_NAMES, help="compute dtype; " + _default("precision")
    )
    train_cmd.add_argument(
        "--augment", action=argparse.BooleanOptionalAction, help="random crop and flip; default: off"
    )
    train_cmd.add_argument("--limit", type=_positive_int, help="use only the first N training images")
    train_cmd.add_argument(
        "--num-classes", type=_positive_int, help="model outputs; default: the largest label + 1"
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
        "--num-processes", type=_positive_int, help="multi-process run: how many processes take part"
    )
    train_cmd.add_argument(
        "--process-id", type=_non_negative_int, help="multi-process run: this process, from 0"
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
        type=_positive_int,
        nargs=3,
        default=(28, 28, 1),
        metavar=("H", "W", "C"),
        help="the image shape the model takes, e.g. 32 32 3; default: 28 28 1 (Fashion-MNIST)",
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
        "--index", type=_non_negative_int, default=0, help="which test image; default: 0"
    )
    filters_cmd.set_defaults(command="draw_filters", prog="funcnn filters")
    return parser


def _default(name: str) -> str:
    return f"default: {TRAIN_DEFAULTS[name]}"


def _warn(prog: str, message: Warning | str, *args: Any, **kwargs: Any) -> None:
    """Show a warning as one line on stderr."""
    print(f"{prog}: warning: {' '.join(str(message).split())}", file=sys.stderr)


def _fail(prog: str, error: BaseException | str, status: int) -> int:
    """Print ``error`` as one line on stderr and return ``status``."""
    print(f"{prog}: error: {' '.join(str(error).split())}", file=sys.stderr)
    return status


def _positive_int(text: str) -> int:
    value = _parse(int, text, "a positive integer")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = _parse(int, text, "a non-negative integer")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {text}")
    return value


def _cpu_devices(text: str) -> str:
    if text != "auto":
        _positive_int(text)
    return text


def _positive_float(text: str) -> float:
    value = _parse(float, text, "a positive number")
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text}")
    return value


def _parse(kind: type, text: str, what: str) -> Any:
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None


if __name__ == "__main__":
    sys.exit(main())
