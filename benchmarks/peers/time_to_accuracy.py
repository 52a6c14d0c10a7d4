"""Time to 91% and 92% test accuracy on real Fashion-MNIST: funcnn against Flax linen and PyTorch eager.

The same model (the Fashion-MNIST CNN), the same recipe (Adam, learning rate
1e-3 with a cosine decay to 0 over the run, batch 128, 10 epochs, inputs
scaled to [0, 1]) and the same batches in the same order
(``funcnn.data.batch_indices``), each in its own process: funcnn through
``funcnn.train.fit`` as its users run it (one CPU device per core, malloc
on huge pages, as ``funcnn train``), Flax linen with a jitted optax step on
one device, PyTorch eager (channels-last). The clock starts at the first
step (compilation included) and stops at the end of the first epoch whose test accuracy
reaches the target (the test set is evaluated after every epoch, on the
clock). Prints the times and the ratios of funcnn's to each peer's.

    python benchmarks/peers/time_to_accuracy.py [--epochs 10] [--targets 0.91 0.92] [--peers flax torch]
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import os
import subprocess
import sys
import time

from run import AS_FUNCNN_TRAIN, worker_env  # light: no JAX

from funcnn import runtime

TARGETS = (0.91, 0.92)


def train_funcnn(epochs: int, limit: int | None) -> list[tuple[float, float]]:
    """``(seconds since the first step, test accuracy)`` after each epoch."""
    import optax

    from funcnn.data import load_fashion_mnist
    from funcnn.models import fashion_mnist_cnn
    from funcnn.train import fit

    x_train, y_train, x_test, y_test = load_fashion_mnist()
    x_train, y_train = x_train[:limit], y_train[:limit]
    steps = len(x_train) // 128 * epochs
    optimizer = optax.adam(optax.cosine_decay_schedule(1e-3, steps))
    train, test = (x_train, y_train), (x_test, y_test)
    result = fit(fashion_mnist_cnn(), train, test, optimizer=optimizer, epochs=epochs, batch_size=128)
    elapsed, curve = 0.0, []
    for record in result.history:
        elapsed += record["seconds"]
        curve.append((elapsed, record["test_accuracy"]))
    return curve


def train_flax(epochs: int, limit: int | None) -> list[tuple[float, float]]:
    """Flax linen as its users write it: ``jax.jit`` of a value-and-grad step with optax, one device."""
    import jax
    import numpy as np
    import optax
    from jax_peers import flax_linen_net

    from funcnn.data import batch_indices, load_fashion_mnist

    x_train, y_train, x_test, y_test = load_fashion_mnist()
    x_train, y_train = x_train[:limit], y_train[:limit]
    as_input = lambda x: x[..., None].astype(np.float32) / 255.0  # noqa: E731
    net = flax_linen_net("fashion_cnn")
    steps = len(x_train) // 128 * epochs
    optimizer = optax.adam(optax.cosine_decay_schedule(1e-3, steps))

    @functools.partial(jax.jit, donate_argnums=0)
    def step(state, x, y):
        params, opt_state = state
        loss = lambda p: optax.softmax_cross_entropy_with_integer_labels(net.apply(p, x), y).mean()  # noqa: E731
        updates, opt_state = optimizer.update(jax.grad(loss)(params), opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    predict = jax.jit(lambda params, x: net.apply(params, x).argmax(-1))
    start, curve = time.perf_counter(), []
    params = net.init(jax.random.key(0), as_input(x_train[:1]))
    state = (params, optimizer.init(params))
    for epoch in range(epochs):
        for idx in batch_indices(0, epoch, len(x_train), 128):
            state = step(state, as_input(x_train[idx]), y_train[idx].astype(np.int32))
        correct = sum(
            int((np.asarray(predict(state[0], as_input(x_test[i : i + 1000]))) == y_test[i : i + 1000]).sum())
            for i in range(0, 10000, 1000)
        )
        curve.append((time.perf_counter() - start, correct / len(y_test)))
    return curve


def train_torch(epochs: int, limit: int | None) -> list[tuple[float, float]]:
    import numpy as np
    import torch
    from torch_peer import build_net

    from funcnn.data import batch_indices, load_fashion_mnist

    torch.manual_seed(0)
    x_train, y_train, x_test, y_test = load_fashion_mnist()
    x_train, y_train = x_train[:limit], y_train[:limit]
    as_input = lambda x: torch.from_numpy(x[:, None].astype(np.float32) / 255.0).contiguous(  # noqa: E731
        memory_format=torch.channels_last
    )
    net = build_net("fashion_cnn").to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    steps = len(x_train) // 128 * epochs
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    loss_fn = torch.nn.CrossEntropyLoss()
    test_x, test_y = as_input(x_test), torch.from_numpy(y_test.astype(np.int64))
    start, curve = time.perf_counter(), []
    for epoch in range(epochs):
        net.train()
        for idx in batch_indices(0, epoch, len(x_train), 128):
            optimizer.zero_grad(set_to_none=True)
            loss_fn(net(as_input(x_train[idx])), torch.from_numpy(y_train[idx].astype(np.int64))).backward()
            optimizer.step()
            schedule.step()
        net.eval()
        with torch.inference_mode():
            correct = sum(
                int((net(test_x[i : i + 1000]).argmax(1) == test_y[i : i + 1000]).sum())
                for i in range(0, 10000, 1000)
            )
        curve.append((time.perf_counter() - start, correct / len(test_y)))
    return curve


def first_time(curve: list[tuple[float, float]], target: float) -> float | None:
    return next((seconds for seconds, accuracy in curve if accuracy >= target), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--targets", type=float, nargs="+", default=list(TARGETS))
    parser.add_argument("--limit", type=int, help="train on the first N images only (a smoke run)")
    parser.add_argument(
        "--peers",
        nargs="+",
        choices=[name for name in WORKERS if name != "funcnn"],
        default=None,
        help="the peers to run against funcnn (default: every installed one)",
    )
    parser.add_argument("--worker", choices=list(WORKERS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(WORKERS[args.worker][1](args.epochs, args.limit)))
        return
    curves = {}
    for name in ["funcnn", *(args.peers or [name for name in WORKERS if name != "funcnn"])]:
        if name != "funcnn" and importlib.util.find_spec(name) is None:
            print(f"{name} is not installed (pip install -e '.[bench]'): skipped")
            continue
        # funcnn as `funcnn train` runs it (one CPU device per core, its settings); the peers on one device
        env = (
            worker_env(runtime.cpu_devices_for(128, cores=runtime.facts().cores), AS_FUNCNN_TRAIN)
            if name == "funcnn"
            else worker_env(1, ())
        )
        command = [sys.executable, __file__, "--worker", name, "--epochs", str(args.epochs)]
        command += [] if args.limit is None else ["--limit", str(args.limit)]
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
        curves[name] = json.loads(done.stdout.strip().splitlines()[-1])
    for name, curve in curves.items():
        print(f"{name:<7} " + "  ".join(f"e{i + 1} {s:.0f}s {a:.4f}" for i, (s, a) in enumerate(curve)))
    for target in args.targets:
        ours = first_time(curves["funcnn"], target)
        cells = [f"funcnn {ours and round(ours, 1)} s"]
        for name in [name for name in curves if name != "funcnn"]:
            theirs = first_time(curves[name], target)
            ratio = f"{ours / theirs:.2f}" if ours and theirs else "-"
            cells.append(
                f"{WORKERS[name][0]} {theirs and round(theirs, 1)} s (funcnn / {WORKERS[name][0]} {ratio})"
            )
        print(f"to {target:.0%}: " + ", ".join(cells))


WORKERS = {
    "funcnn": ("funcnn", train_funcnn),
    "flax": ("Flax linen", train_flax),
    "torch": ("PyTorch", train_torch),
}
"""Worker name (also the package it needs) -> (label, training function)."""


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    main()
