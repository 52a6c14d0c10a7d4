"""Time to 91% and 92% test accuracy on real Fashion-MNIST: funcnn against PyTorch eager.

The same model (the Fashion-MNIST CNN), the same recipe (Adam, learning rate
1e-3 with a cosine decay to 0 over the run, batch 128, 10 epochs, inputs
scaled to [0, 1]) and the same batches in the same order
(``funcnn.data.batch_indices``), each in its own process: funcnn through
``funcnn.train.fit`` as its users run it (one CPU device per core), PyTorch
eager (channels-last). The clock starts at the first step (compilation
included) and stops at the end of the first epoch whose test accuracy
reaches the target (the test set is evaluated after every epoch, on the
clock). Prints both times and the ratio funcnn / PyTorch.

    python benchmarks/peers/time_to_accuracy.py [--epochs 10] [--targets 0.91 0.92]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time

from funcnn.cli import cpu_devices_for  # light: no JAX

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
    parser.add_argument("--worker", choices=["funcnn", "torch"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        train = train_funcnn if args.worker == "funcnn" else train_torch
        print(json.dumps(train(args.epochs, args.limit)))
        return
    curves = {}
    names = ["funcnn", "torch"] if importlib.util.find_spec("torch") else ["funcnn"]
    if len(names) == 1:
        print("PyTorch is not installed (pip install -e '.[bench]'): funcnn alone")
    for name in names:
        env = dict(os.environ)
        if name == "funcnn" and "xla_force_host_platform_device_count" not in env.get("XLA_FLAGS", ""):
            count = cpu_devices_for(128)
            env["XLA_FLAGS"] = (
                f"{env.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={count}".strip()
            )
        command = [sys.executable, __file__, "--worker", name, "--epochs", str(args.epochs)]
        command += [] if args.limit is None else ["--limit", str(args.limit)]
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
        curves[name] = json.loads(done.stdout.strip().splitlines()[-1])
    for name, curve in curves.items():
        print(f"{name:<7} " + "  ".join(f"e{i + 1} {s:.0f}s {a:.4f}" for i, (s, a) in enumerate(curve)))
    for target in args.targets:
        ours, theirs = first_time(curves["funcnn"], target), first_time(curves.get("torch", []), target)
        ratio = f"{ours / theirs:.2f}" if ours and theirs else "-"
        times = f"funcnn {ours and round(ours, 1)} s, PyTorch {theirs and round(theirs, 1)} s"
        print(f"to {target:.0%}: {times}, funcnn / PyTorch {ratio}")


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    main()
