"""Epoch speed: one compiled ``lax.scan`` per epoch, the same in progress chunks, and a Python loop.

The Fashion-MNIST CNN, Adam, batch 128, on the first ``--images`` training
images (the real data when installed, random images otherwise). Both modes
run the same step on the same batches, exactly as ``funcnn.train.fit`` runs
them: the scan gathers each batch on the device from data put there once;
the loop gathers each batch on the host and copies it over. Both are
compiled first, then timed in the same process with repeats interleaved;
the table gives seconds per epoch, images per second and the ratios
loop / scan (> 1 means the scan is faster) and chunks / scan: the cost of
running the scan as ``fit`` does, in about ten chunks so its progress shows.

    python benchmarks/epoch_scan_vs_loop.py [--images 8192] [--batch 128] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import jax
import numpy as np
import optax

from funcnn.data import DataNotFoundError, batch_indices, load_fashion_mnist
from funcnn.models import INPUT_SHAPE, fashion_mnist_cnn
from funcnn.train import DEFAULT_LOSS, build_train_step, init_train_state, make_scan_epoch, run_loop_epoch
from funcnn.train.epoch import progress_chunks


def training_images(n: int) -> tuple[np.ndarray, np.ndarray, str]:
    """The first ``n`` Fashion-MNIST training images, or random ones when the data is not installed."""
    try:
        x, y, _, _ = load_fashion_mnist()
        return x[:n], y[:n], "Fashion-MNIST"
    except DataNotFoundError:
        rng = np.random.default_rng(0)
        return rng.integers(0, 256, (n, 28, 28), np.uint8), rng.integers(0, 10, n).astype(np.uint8), "random"


def build_runners(images: np.ndarray, labels: np.ndarray, batch: int) -> dict[str, Callable[[], float]]:
    """Zero-argument callables that train one epoch and return its wall time in seconds."""
    model, optimizer = fashion_mnist_cnn(), optax.adam(1e-3)
    step = build_train_step(model, DEFAULT_LOSS, optimizer)
    device = jax.devices()[0]
    idx = batch_indices(0, 0, len(images), batch)
    scan_epoch, loop_step = make_scan_epoch(step), jax.jit(step, donate_argnums=0)
    on_device = jax.device_put(images, device), jax.device_put(labels, device)
    states = {
        mode: jax.device_put(init_train_state(model, optimizer, jax.random.key(0), INPUT_SHAPE), device)
        for mode in ("scan", "chunks", "loop")
    }

    def scan() -> float:
        start = time.perf_counter()
        states["scan"], metrics = scan_epoch(states["scan"], *on_device, jax.device_put(idx, device))
        jax.block_until_ready(metrics)
        return time.perf_counter() - start

    def chunks() -> float:
        start = time.perf_counter()
        previous = None
        for chunk in progress_chunks(len(idx)):
            chunk_idx = jax.device_put(idx[chunk], device)
            states["chunks"], metrics = scan_epoch(states["chunks"], *on_device, chunk_idx)
            if previous is not None:  # as fit: read the previous chunk's losses while this one runs
                np.asarray(previous.loss)
            previous = metrics
        np.asarray(previous.loss)
        return time.perf_counter() - start

    def loop() -> float:
        start = time.perf_counter()
        states["loop"], metrics = run_loop_epoch(loop_step, states["loop"], images, labels, idx)
        return time.perf_counter() - start  # run_loop_epoch returns host arrays: finished

    return {"scan": scan, "chunks": chunks, "loop": loop}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8192, help="training images per epoch")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs per mode")
    args = parser.parse_args()
    images, labels, source = training_images(args.images)
    runners = build_runners(images, labels, args.batch)
    compile_seconds = {mode: run() for mode, run in runners.items()}  # first epoch: compiles
    times: dict[str, list[float]] = {mode: [] for mode in runners}
    for _ in range(args.repeats):
        for mode, run in runners.items():
            times[mode].append(run())
    steps = len(images) // args.batch
    print(f"{jax.devices()[0].device_kind} x{jax.device_count()}, {source}, {steps} steps of {args.batch}")
    print(f"{'mode':<6}{'first epoch s':>15}{'epoch s (median)':>18}{'images/s':>10}")
    for mode, values in times.items():
        median = statistics.median(values)
        print(f"{mode:<6}{compile_seconds[mode]:>15.2f}{median:>18.3f}{steps * args.batch / median:>10.0f}")
    ratio = statistics.median(times["loop"]) / statistics.median(times["scan"])
    print(f"loop / scan = {ratio:.3f}  (> 1: the scanned epoch is faster)")
    chunked = statistics.median(times["chunks"]) / statistics.median(times["scan"])
    print(f"chunks / scan = {chunked:.3f}  (the cost of progress inside a scanned epoch)")


if __name__ == "__main__":
    main()
