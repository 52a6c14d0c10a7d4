"""The peer benchmark: funcnn against raw JAX, Flax (linen, NNX), Equinox and PyTorch, side by side.

Two models (``peer_models.py``), Adam, synthetic batches, every
implementation as its users run it: funcnn data-parallel over one CPU device
per core (its default), with the hand-written rules and with autodiff, one
jitted call per step (``step``) and steps inside one ``lax.scan`` (``scan``,
how ``fit`` runs an epoch), plus on one device for reference; the JAX peers
on one device, and raw JAX and Flax linen also data-parallel over one device
per core (jit with a sharded batch), for reference; PyTorch eager (channels-last) and ``torch.compile``. Each
configuration runs in its own process (JAX's device count is fixed at
start), the configurations interleaved over ``--repeats`` rounds; each
process compiles, then times ``--windows`` windows of ``--steps`` steps and
reports their median. The table gives the median over rounds and the
spread, the ratio to PyTorch eager (training to its training step,
inference to its inference), the training FLOP rate (analytic FLOPs, 3x the
forward pass) and its share of the highest rate any implementation reached
on that model.

The peers are an optional extra: ``pip install -e '.[bench]'``; a missing
one is skipped.

    python benchmarks/peers/run.py [--models fashion_cnn cifar_vgg] [--impls ...] [--repeats 3]
                                   [--steps 10] [--windows 4] [--batch 128] [--json results.json]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from peer_models import train_gflop_per_image  # noqa: E402

from funcnn.cli import cpu_devices_for  # noqa: E402  (light: no JAX)

CONFIGS = {
    "funcnn": ("funcnn", ["step", "scan", "infer"], "per-core"),
    "funcnn 1 device": ("funcnn", ["step", "scan"], 1),
    "funcnn autodiff": ("funcnn-autodiff", ["step", "scan"], "per-core"),
    "raw JAX": ("jax", ["step", "scan"], 1),
    "Flax linen": ("flax-linen", ["step", "scan"], 1),
    "raw JAX per core": ("jax", ["step"], "per-core"),
    "Flax linen per core": ("flax-linen", ["step"], "per-core"),
    "Flax NNX": ("flax-nnx", ["step"], 1),
    "Equinox": ("equinox", ["step"], 1),
    "PyTorch eager": ("torch", ["step", "infer"], 1),
    "torch.compile": ("torch-compile", ["step", "infer"], 1),
}
"""Row name -> (implementation, modes, JAX devices)."""

NEEDS = {
    "flax-linen": "flax",
    "flax-nnx": "flax",
    "equinox": "equinox",
    "torch": "torch",
    "torch-compile": "torch",
}


def worker(impl: str, mode: str, model: str, batch: int, steps: int, windows: int) -> dict:
    """In this process: build, compile (first run), then time ``windows`` runs of ``steps`` steps."""
    if impl.startswith("torch"):
        from torch_peer import build_torch

        runners = build_torch(model, batch, steps, compile=impl == "torch-compile")
    else:
        import jax
        from jax_peers import BUILDERS

        runners = BUILDERS[impl](model, batch, steps)
    run = runners[mode]
    run()  # compiles
    rates = []
    for _ in range(windows):
        start = time.perf_counter()
        run()
        rates.append(batch * steps / (time.perf_counter() - start))
    devices = 1 if impl.startswith("torch") else jax.device_count()
    return {"images_per_second": statistics.median(rates), "devices": devices}


def run_worker(impl: str, mode: str, devices: int | str, model: str, args: argparse.Namespace) -> dict:
    env = dict(os.environ)
    count = cpu_devices_for(args.batch) if devices == "per-core" else devices
    flags = re.sub(r"--xla_force_host_platform_device_count=\S*", "", env.get("XLA_FLAGS", "")).strip()
    env["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={count}".strip()
    command = [sys.executable, __file__, "--worker", impl, mode, model, str(args.batch), str(args.steps)]
    command += [str(args.windows)]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["fashion_cnn", "cifar_vgg"])
    parser.add_argument(
        "--impls", nargs="+", default=list(CONFIGS), help="row names, e.g. funcnn 'PyTorch eager'"
    )
    parser.add_argument("--modes", nargs="+", default=["step", "scan", "infer"])
    parser.add_argument("--skip", nargs="+", default=[], metavar="ROW:MODE", help="e.g. 'raw JAX:scan'")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10, help="steps per timed window")
    parser.add_argument("--windows", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3, help="rounds over the configurations")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--worker", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        impl, mode, model, batch, steps, windows = args.worker
        print(json.dumps(worker(impl, mode, model, int(batch), int(steps), int(windows))))
        return
    rows = []
    for name in args.impls:
        impl, modes, devices = CONFIGS[name]
        if impl in NEEDS and importlib.util.find_spec(NEEDS[impl]) is None:
            print(f"skipping {name}: {NEEDS[impl]} is not installed (pip install -e '.[bench]')")
            continue
        modes = [mode for mode in modes if mode in args.modes and f"{name}:{mode}" not in args.skip]
        rows += [(name, impl, mode, devices) for mode in modes]
    results = {}
    for model in args.models:
        for _ in range(args.repeats):
            for name, impl, mode, devices in rows:
                result = run_worker(impl, mode, devices, model, args)
                entry = results.setdefault((model, name, mode), {"rates": [], "devices": None})
                if "error" in result:
                    entry["error"] = result["error"]
                else:
                    entry["rates"].append(result["images_per_second"])
                    entry["devices"] = result["devices"]
        report(model, results, rows, args)
    if args.json:
        args.json.write_text(
            json.dumps(
                [{"model": m, "row": n, "mode": md, **e} for (m, n, md), e in results.items()], indent=1
            )
        )


WIDTHS = ("<21", "<7", ">8", ">10", ">17", ">10", ">9", ">9")


def report(model: str, results: dict, rows: list, args: argparse.Namespace) -> None:
    gflop = train_gflop_per_image(model)
    medians = {
        (n, md): statistics.median(e["rates"])
        for (m, n, md), e in results.items()
        if m == model and e["rates"]
    }
    train_rates = [rate for (n, md), rate in medians.items() if md != "infer"]
    best = max(train_rates, default=None)
    print(f"\n{model}: batch {args.batch}, {gflop:.4f} GFLOP per training image; {os.cpu_count()} cores")
    header = ("implementation", "mode", "devices", "images/s", "spread", "vs torch", "GFLOP/s", "of best")
    print("".join(f"{h:{w}}" for h, w in zip(header, WIDTHS, strict=True)))
    for name, _, mode, _ in rows:
        entry = results[model, name, mode]
        if not entry["rates"]:
            print(f"{name:<21}{mode:<7}  failed: {entry.get('error')}")
            continue
        median = medians[name, mode]
        torch = medians.get(("PyTorch eager", "infer" if mode == "infer" else "step"))
        ratio = f"{median / torch:.2f}x" if torch else "-"
        flops = "" if mode == "infer" else f"{median * gflop:.0f}"
        share = "" if mode == "infer" or not best else f"{median / best:.0%}"
        spread = f"{min(entry['rates']):.0f}-{max(entry['rates']):.0f}"
        cells = (name, mode, entry["devices"], f"{median:.0f}", spread, ratio, flops, share)
        print("".join(f"{cell:{width}}" for cell, width in zip(cells, WIDTHS, strict=True)))


if __name__ == "__main__":
    main()
