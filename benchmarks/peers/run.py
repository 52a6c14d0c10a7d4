"""The peer benchmark: funcnn against raw JAX, Flax (linen, NNX), Equinox and PyTorch, side by side.

Two models (``peer_models.py``), Adam, synthetic batches, every
implementation as its users run it: funcnn as ``funcnn train`` runs it
(data-parallel over one CPU device per core, malloc on huge pages, XLA:CPU's
own convolutions: :func:`funcnn.runtime.plan`), with the hand-written rules and with autodiff,
one jitted call per step (``step``) and steps inside one ``lax.scan``
(``scan``, how ``fit`` runs an epoch), and for reference on one device,
with the default malloc and with YNNPACK's convolutions; the JAX peers on one
device, and raw JAX and Flax linen also data-parallel over one device per
core (jit with a sharded batch), for reference; PyTorch eager
(channels-last, also with huge pages for reference) and ``torch.compile``.
Each configuration runs in its own process (JAX's device count and glibc's
tunables are fixed at start), the configurations interleaved over
``--repeats`` rounds; each process compiles (the first call, timed), then
times ``--windows`` windows of ``--steps`` steps and reports their median,
its CPU use over those windows (CPU seconds per second: 2.0 is two busy
cores) and its peak resident memory. The table gives the median over rounds
and the spread, the ratio to PyTorch eager (training to its training step,
inference to its inference), the training FLOP rate (analytic FLOPs, 3x the
forward pass) and its share of the highest rate any implementation reached
on that model. ``--out DIR`` also writes ``results.json``, ``results.md``
(the tables) and ``results.png`` (a bar chart of the ratios).

The peers are an optional extra: ``pip install -e '.[bench]'``; a missing
one is skipped.

    python benchmarks/peers/run.py [--models fashion_cnn cifar_vgg] [--impls ...] [--repeats 3]
                                   [--steps 10] [--windows 4] [--batch 128] [--out DIR]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from peer_models import train_gflop_per_image  # noqa: E402

from funcnn import runtime  # noqa: E402  (light: no JAX)

AS_FUNCNN_TRAIN = ("huge pages", "CPU convolutions")
"""What ``funcnn train`` sets before JAX starts (:func:`funcnn.runtime.plan`)."""

CONFIGS = {
    "funcnn": ("funcnn", ["step", "scan", "infer"], "per-core", AS_FUNCNN_TRAIN),
    "funcnn default malloc": ("funcnn", ["step", "scan", "infer"], "per-core", ("CPU convolutions",)),
    "funcnn YNNPACK convolutions": ("funcnn", ["step", "scan", "infer"], "per-core", ("huge pages",)),
    "funcnn 1 device": ("funcnn", ["step", "scan"], 1, AS_FUNCNN_TRAIN),
    "funcnn from a script, default settings": ("funcnn", ["step", "scan"], None, ()),
    "funcnn after the runtime call": ("funcnn", ["step", "scan"], None, ("runtime call",)),
    "funcnn autodiff": ("funcnn-autodiff", ["step", "scan"], "per-core", AS_FUNCNN_TRAIN),
    "raw JAX": ("jax", ["step", "scan"], 1, ()),
    "Flax linen": ("flax-linen", ["step", "scan"], 1, ()),
    "raw JAX per core": ("jax", ["step"], "per-core", ()),
    "Flax linen per core": ("flax-linen", ["step"], "per-core", ()),
    "Flax NNX": ("flax-nnx", ["step"], 1, ()),
    "Equinox": ("equinox", ["step"], 1, ()),
    "PyTorch eager": ("torch", ["step", "infer"], 1, ()),
    "PyTorch eager huge pages": ("torch", ["step", "infer"], 1, ("huge pages",)),
    "torch.compile": ("torch-compile", ["step", "infer"], 1, ()),
}
"""Row name -> (implementation, modes, JAX devices, settings made before the process starts:
``"huge pages"`` for malloc, ``"CPU convolutions"`` for XLA:CPU's own convolutions, ``"runtime
call"`` for a process that calls :func:`funcnn.runtime.configure` itself, as a script would). JAX
devices ``None``: JAX's default (one CPU device), what a script gets that sets nothing."""

QUICK = ["funcnn", "raw JAX", "PyTorch eager"]
"""The rows of ``--quick`` (``make bench``)."""

NEEDS = {
    "flax-linen": "flax",
    "flax-nnx": "flax",
    "equinox": "equinox",
    "torch": "torch",
    "torch-compile": "torch",
}


def worker(impl: str, mode: str, model: str, batch: int, steps: int, windows: int) -> dict:
    """In this process: build, compile (first run), then time ``windows`` runs of ``steps`` steps.

    With ``FUNCNN_BENCH_RUNTIME_CALL`` set, the process first makes the one call a script makes
    for ``funcnn train``'s set-up, :func:`funcnn.runtime.configure` (which re-executes it once).
    """
    if os.environ.pop(RUNTIME_CALL, None):
        runtime.configure(batch_size=batch)
    if impl.startswith("torch"):
        from torch_peer import build_torch

        runners = build_torch(model, batch, steps, compile=impl == "torch-compile")
    else:
        import jax
        from jax_peers import BUILDERS

        runners = BUILDERS[impl](model, batch, steps)
    run = runners[mode]
    start = time.perf_counter()
    run()  # compiles
    compile_seconds = time.perf_counter() - start
    rates, cpu_start, wall_start = [], time.process_time(), time.perf_counter()
    for _ in range(windows):
        start = time.perf_counter()
        run()
        rates.append(batch * steps / (time.perf_counter() - start))
    cpu_use = (time.process_time() - cpu_start) / (time.perf_counter() - wall_start)
    return {
        "images_per_second": statistics.median(rates),
        "devices": 1 if impl.startswith("torch") else jax.device_count(),
        "compile_seconds": compile_seconds,
        "cpu_use": cpu_use,
        "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # KiB on Linux
    }


RUNTIME_CALL = "FUNCNN_BENCH_RUNTIME_CALL"
"""Set in a worker's environment: the worker calls :func:`funcnn.runtime.configure` itself."""


def worker_env(devices: int | None, settings: tuple[str, ...]) -> dict[str, str]:
    """This process's environment for a worker on ``devices`` JAX CPU devices (``None``: JAX's
    default), with ``settings`` (:data:`CONFIGS`) applied by :func:`funcnn.runtime.plan`, as
    ``funcnn train`` applies them, after every other such setting of this process's environment
    is removed. With ``"runtime call"``, nothing is applied: the worker makes the call itself."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("GLIBC_TUNABLES", "JAX_NUM_CPU_DEVICES")
    }
    drop = r"--xla_force_host_platform_device_count=\S*|--xla_cpu_experimental_ynn_fusion_type=\S*"
    env["XLA_FLAGS"] = re.sub(drop, "", env.get("XLA_FLAGS", "")).strip()
    if "runtime call" in settings:
        return env | {RUNTIME_CALL: "1"}
    plan = runtime.plan(
        runtime.facts()._replace(environ=env, jax_imported=False, backend_started=False),
        cpu_devices=devices,
        cpu_convolutions="CPU convolutions" in settings,
        huge_pages="huge pages" in settings,
    )
    return env | plan.environ


def run_worker(
    impl: str,
    mode: str,
    devices: int | str | None,
    settings: tuple[str, ...],
    model: str,
    args: argparse.Namespace,
) -> dict:
    count = (
        runtime.cpu_devices_for(args.batch, cores=runtime.facts().cores) if devices == "per-core" else devices
    )
    command = [sys.executable, __file__, "--worker", impl, mode, model, str(args.batch), str(args.steps)]
    command += [str(args.windows)]
    done = subprocess.run(command, env=worker_env(count, settings), capture_output=True, text=True)
    if done.returncode:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["fashion_cnn", "cifar_vgg"])
    parser.add_argument(
        "--impls", nargs="+", default=list(CONFIGS), help="row names, e.g. funcnn 'PyTorch eager'"
    )
    parser.add_argument("--quick", action="store_true", help=f"only the rows {', '.join(QUICK)}")
    parser.add_argument("--modes", nargs="+", default=["step", "scan", "infer"])
    parser.add_argument(
        "--skip",
        nargs="+",
        default=[],
        metavar="[MODEL:]ROW:MODE",
        help="e.g. 'raw JAX:scan' (both models) or 'cifar_vgg:raw JAX:scan'",
    )
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10, help="steps per timed window")
    parser.add_argument("--windows", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3, help="rounds over the configurations")
    parser.add_argument("--out", type=Path, help="also write results.json, results.md and results.png here")
    parser.add_argument("--worker", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        impl, mode, model, batch, steps, windows = args.worker
        print(json.dumps(worker(impl, mode, model, int(batch), int(steps), int(windows))))
        return
    unknown = sorted(set(args.impls) - set(CONFIGS))
    if unknown:
        parser.error(f"unknown rows {unknown}; the rows are {list(CONFIGS)}")
    rows = []
    for name in QUICK if args.quick else args.impls:
        impl, modes, devices, settings = CONFIGS[name]
        if impl in NEEDS and importlib.util.find_spec(NEEDS[impl]) is None:
            print(f"skipping {name}: {NEEDS[impl]} is not installed (pip install -e '.[bench]')")
            continue
        modes = [mode for mode in modes if mode in args.modes and f"{name}:{mode}" not in args.skip]
        rows += [(name, impl, mode, devices, settings) for mode in modes]
    results, tables = {}, []
    for model in args.models:
        rows_here = [row for row in rows if f"{model}:{row[0]}:{row[2]}" not in args.skip]
        for _ in range(args.repeats):
            for name, impl, mode, devices, settings in rows_here:
                result = run_worker(impl, mode, devices, settings, model, args)
                entry = results.setdefault((model, name, mode), {"runs": []})
                if "error" in result:
                    entry["error"] = result["error"]
                else:
                    entry["runs"].append(result)
        tables.append(table(model, results, rows_here, args))
        print("\n" + tables[-1], flush=True)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        records = [{"model": m, "row": n, "mode": md, **e} for (m, n, md), e in results.items()]
        (args.out / "results.json").write_text(json.dumps(records, indent=1))
        (args.out / "results.md").write_text("\n\n".join(tables) + "\n")
        chart(results, args.models, args.out / "results.png")
        print(f"\nwrote {args.out}/results.json, results.md and results.png")


HEADER = ("implementation", "mode", "devices", "images/s", "spread", "vs PyTorch eager", "GFLOP/s", "of best")
HEADER += ("compile s", "CPU use", "peak MiB")


def _median(entry: dict, key: str) -> float:
    return statistics.median(run[key] for run in entry["runs"])


def table(model: str, results: dict, rows: list, args: argparse.Namespace) -> str:
    """The markdown table of one model: medians over the rounds, spread, ratios and FLOP rates."""
    gflop = train_gflop_per_image(model)
    ran = {(n, md): e for (m, n, md), e in results.items() if m == model and e["runs"]}
    rate = {key: _median(entry, "images_per_second") for key, entry in ran.items()}
    best = max((r for (_, md), r in rate.items() if md != "infer"), default=None)
    lines = [
        f"{model}: batch {args.batch}, {gflop:.4f} GFLOP per training image, {os.cpu_count()} cores; "
        f"median of {args.repeats} round(s), each the median of {args.windows} window(s) of {args.steps} "
        "step(s)",
        "",
        "| " + " | ".join(HEADER) + " |",
        "|" + "---|" * len(HEADER),
    ]
    for name, _, mode, _, _ in rows:
        entry = results[model, name, mode]
        if not entry["runs"]:
            lines.append(f"| {name} | {mode} | failed: {entry.get('error')} |")
            continue
        rates = [run["images_per_second"] for run in entry["runs"]]
        torch = rate.get(("PyTorch eager", "infer" if mode == "infer" else "step"))
        training = mode != "infer"
        cells = (
            name,
            mode,
            entry["runs"][0]["devices"],
            f"{rate[name, mode]:,.0f}",
            f"{min(rates):,.0f}–{max(rates):,.0f}",
            f"{rate[name, mode] / torch:.2f}x" if torch else "-",
            f"{rate[name, mode] * gflop:.0f}" if training else "",
            f"{rate[name, mode] / best:.0%}" if training and best else "",
            f"{_median(entry, 'compile_seconds'):.1f}",
            f"{_median(entry, 'cpu_use'):.2f}",
            f"{_median(entry, 'peak_mib'):,.0f}",
        )
        lines.append("| " + " | ".join(str(cell) for cell in cells) + " |")
    return "\n".join(lines)


def chart(results: dict, models: list[str], path: Path) -> None:
    """One panel per model: each row's images/s as a ratio to PyTorch eager (training to its training
    step, inference to its inference), the line at 1."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(models), figsize=(6.5 * len(models), 6), squeeze=False)
    for axis, model in zip(axes[0], models, strict=True):
        ran = {(n, md): _median(e, "images_per_second") for (m, n, md), e in results.items()
               if m == model and e["runs"]}  # fmt: skip
        labels, ratios = [], []
        for (name, mode), rate in ran.items():
            torch = ran.get(("PyTorch eager", "infer" if mode == "infer" else "step"))
            if torch:
                labels.append(f"{name} ({mode})")
                ratios.append(rate / torch)
        colours = ["tab:blue" if label.startswith("funcnn") else "tab:grey" for label in labels]
        bars = axis.barh(labels[::-1], ratios[::-1], color=colours[::-1])
        axis.bar_label(bars, [f"{ratio:.2f}x" for ratio in ratios[::-1]], padding=2, fontsize=8)
        axis.axvline(1.0, color="black", linewidth=1)
        axis.set_xscale("log")
        axis.xaxis.set_major_locator(matplotlib.ticker.FixedLocator([0.03, 0.1, 0.25, 0.5, 1, 2, 4]))
        axis.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%gx"))
        axis.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        axis.set_xlabel("images/s ÷ PyTorch eager (log scale)")
        axis.set_title(model)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


if __name__ == "__main__":
    main()
