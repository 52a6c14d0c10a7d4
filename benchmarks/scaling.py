"""Data-parallel scaling: training throughput on 1, 2, 4 and 8 devices, as ratios to one device.

The Fashion-MNIST CNN, Adam, global batch 128 (``--batch``), trained as
``funcnn.train.fit`` trains it: each epoch a compiled ``lax.scan`` over data
put on every device, each batch split along the mesh's ``"data"`` axis
(:mod:`funcnn.distributed`). Each device count runs in its own process, the
counts interleaved over ``--repeats`` rounds; each process times
``--windows`` windows of ``--steps`` steps after compiling and reports their
median. The table gives the median over rounds, the spread (min-max) and
the ratio to one device; with ``--precision fp32 bf16`` each precision
(the layers' compute dtype, :data:`funcnn.train.PRECISIONS`) gets its rows
and the bf16 / fp32 throughput ratio per device count.

On a CPU-only machine the devices are virtual (``--xla_force_host_platform_
device_count``, set before JAX starts in each process): the speed-up is
real up to the number of cores, since XLA:CPU runs each convolution on one
core, and past it the extra devices only share the same cores (overhead).
On a machine with accelerators the counts are its real devices; counts
above the number it has are skipped.

    python benchmarks/scaling.py [--devices 1 2 4 8] [--precision fp32 bf16] [--batch 128] [--steps 20]
                                 [--windows 4] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time


def worker(devices: int, precision: str, batch: int, steps: int, windows: int) -> dict:
    """Run in a process whose JAX sees ``devices`` CPU devices (or real accelerators):
    compile, then time ``windows`` windows of ``steps`` scanned steps on ``devices`` devices."""
    import jax
    import numpy as np
    import optax

    from funcnn import distributed
    from funcnn.data import scale_images
    from funcnn.models import INPUT_SHAPE, fashion_mnist_cnn
    from funcnn.train import DEFAULT_LOSS, PRECISIONS, abstract_train_state, init_train_state
    from funcnn.train.loop import compiled_epoch_or_step

    if jax.device_count() < devices:
        return {"devices": devices, "skipped": f"only {jax.device_count()} device(s)"}
    mesh = distributed.data_mesh(jax.devices()[:devices])
    model, optimizer = fashion_mnist_cnn(dtype=PRECISIONS[precision]), optax.adam(1e-3)
    shardings = distributed.state_shardings(mesh, abstract_train_state(model, optimizer, INPUT_SHAPE))
    state = init_train_state(model, optimizer, jax.random.key(0), INPUT_SHAPE, shardings=shardings)
    rng = np.random.default_rng(0)
    n = batch * steps
    images = rng.integers(0, 256, (n, 28, 28), np.uint8)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    data = distributed.replicate(mesh, (images, labels))
    index_sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(None, distributed.DATA_AXIS))
    indices = jax.device_put(rng.permutation(n).reshape(steps, batch), index_sharding)
    epoch = compiled_epoch_or_step(model, DEFAULT_LOSS, optimizer, scale_images, None, "scan", mesh)
    state, metrics = epoch(state, *data, indices)  # compiles
    jax.block_until_ready(metrics)
    rates = []
    for _ in range(windows):
        start = time.perf_counter()
        state, metrics = epoch(state, *data, indices)
        jax.block_until_ready(metrics)
        rates.append(n / (time.perf_counter() - start))
    device = jax.devices()[0]
    return {"devices": devices, "images_per_second": statistics.median(rates), "kind": device.device_kind,
            "platform": device.platform}  # fmt: skip


def run_worker(devices: int, precision: str, args: argparse.Namespace) -> dict:
    """:func:`worker` in a fresh process with ``devices`` virtual CPU devices."""
    env = dict(os.environ)
    flags = re.sub(r"--xla_force_host_platform_device_count=\S*", "", env.get("XLA_FLAGS", "")).strip()
    env["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={devices}".strip()
    command = [sys.executable, __file__, "--worker", str(devices), "--precision", precision]
    command += ["--batch", str(args.batch)]
    command += ["--steps", str(args.steps), "--windows", str(args.windows)]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"the worker for {devices} device(s) failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--precision", nargs="+", default=["fp32"], choices=["fp32", "bf16"])
    parser.add_argument("--batch", type=int, default=128, help="global batch (divides by every count)")
    parser.add_argument("--steps", type=int, default=20, help="steps per timed window")
    parser.add_argument("--windows", type=int, default=4, help="timed windows per process")
    parser.add_argument("--repeats", type=int, default=3, help="rounds over the device counts")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        print(json.dumps(worker(args.worker, args.precision[0], args.batch, args.steps, args.windows)))
        return
    runs = [(precision, count) for precision in args.precision for count in args.devices]
    rates: dict[tuple[str, int], list[float]] = {run: [] for run in runs}
    skipped, kind = {}, None
    for _ in range(args.repeats):
        for precision, count in runs:
            result = run_worker(count, precision, args)
            if "skipped" in result:
                skipped[count] = result["skipped"]
                continue
            rates[precision, count].append(result["images_per_second"])
            kind = f"{result['platform']} ({result['kind']})"
    cores = os.cpu_count()
    print(f"{kind or 'no count ran'}, {cores} cores; Fashion-MNIST CNN, batch {args.batch}, scanned epoch")
    first = f"ratio to {args.devices[0]}"
    print(f"{'precision':>9}{'devices':>8}{'images/s (median)':>19}{'spread':>17}{first:>12}")
    medians = {run: statistics.median(values) for run, values in rates.items() if values}
    for precision, count in runs:
        values = rates[precision, count]
        if not values:
            print(f"{precision:>9}{count:>8}  skipped: {skipped.get(count)}")
            continue
        base = medians.get((precision, args.devices[0]))
        ratio = f"{medians[precision, count] / base:>12.2f}" if base else ""
        spread = f"{min(values):.0f}-{max(values):.0f}"
        print(f"{precision:>9}{count:>8}{medians[precision, count]:>19.0f}{spread:>17}{ratio}")
    for count in args.devices if {"fp32", "bf16"} <= set(args.precision) else ():
        if ("fp32", count) in medians and ("bf16", count) in medians:
            print(f"bf16 / fp32 on {count} device(s): {medians['bf16', count] / medians['fp32', count]:.2f}")
    if kind and kind.startswith("cpu"):
        print(
            f"virtual CPU devices: a real speed-up up to {cores} device(s), one per core (XLA:CPU runs each "
            "convolution on one core); past that the devices share the cores and only add overhead"
        )


if __name__ == "__main__":
    main()
