"""Train-step speed: hand-written VJPs (``grad="custom"``) vs JAX autodiff (``grad="autodiff"``).

Two models (the Fashion-MNIST CNN and a small ResNet), Adam, batch 128 of
28x28x1 images; each step run as separate jitted calls and as a ``lax.scan``
over the steps inside one compiled call. Every configuration is timed in
the same process, repeats interleaved, and reported as ms per step and as
the ratio autodiff / custom (> 1 means the hand-written rules are faster).
With ``torch`` installed, a PyTorch train step of the same CNN is the peer
column.

    python benchmarks/vjp_vs_autodiff.py [--batch 128] [--steps 10] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import jax
import optax

import funcnn as fn


def make_step(model: fn.Layer, optimizer: optax.GradientTransformation) -> Callable:
    """One Adam step on softmax cross-entropy: ``(carry, (x, y)) -> (carry, loss)``."""

    def step(carry, batch):
        params, state, opt_state = carry
        x, y = batch

        def loss_fn(p):
            logits, new_state = model.apply(p, state, x, train=True)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), new_state

        (loss, state), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), state, opt_state), loss

    return step


def build_runners(
    model_fn: Callable[..., fn.Layer], grad: str, batch: int, steps: int
) -> dict[str, Callable]:
    """Return zero-argument callables that run ``steps`` train steps, separately or scanned."""
    model = model_fn(grad=grad)
    _, params, state = model.init(jax.random.key(0), fn.models.INPUT_SHAPE)
    optimizer = optax.adam(1e-3)
    carry = (params, state, optimizer.init(params))
    xs = jax.random.normal(jax.random.key(1), (steps, batch, 28, 28, 1))
    ys = jax.random.randint(jax.random.key(2), (steps, batch), 0, 10)
    step = make_step(model, optimizer)
    jitted = jax.jit(step)
    scanned = jax.jit(lambda carry, data: jax.lax.scan(step, carry, data))

    def separate():
        c, loss = carry, None
        for i in range(steps):
            c, loss = jitted(c, (xs[i], ys[i]))
        return jax.block_until_ready(loss)

    def in_scan():
        return jax.block_until_ready(scanned(carry, (xs, ys))[1])

    return {"separate": separate, "scan": in_scan}


def torch_runner(batch: int, steps: int) -> Callable | None:
    """The same CNN and Adam step in PyTorch (CPU), or ``None`` without torch."""
    try:
        import torch
    except ImportError:
        return None
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(32, 64, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(3136, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10),
    )  # fmt: skip
    optimizer = torch.optim.Adam(net.parameters(), 1e-3)
    xs = torch.randn(steps, batch, 1, 28, 28)
    ys = torch.randint(0, 10, (steps, batch))

    def run():
        for i in range(steps):
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(net(xs[i]), ys[i])
            loss.backward()
            optimizer.step()
        return loss

    return run


def time_per_step(run: Callable, steps: int) -> float:
    start = time.perf_counter()
    run()
    return (time.perf_counter() - start) / steps * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    models = {"fashion_mnist_cnn": fn.models.fashion_mnist_cnn, "small_resnet": fn.models.small_resnet}
    runners = {
        (name, grad, mode): run
        for name, model_fn in models.items()
        for grad in ("custom", "autodiff")
        for mode, run in build_runners(model_fn, grad, args.batch, args.steps).items()
    }
    peer = torch_runner(args.batch, args.steps)
    if peer is not None:
        runners[("fashion_mnist_cnn", "torch", "separate")] = peer
    for run in runners.values():  # compile and warm up
        run()
    times: dict = {key: [] for key in runners}
    for _ in range(args.repeats):  # interleaved, so drift hits every row alike
        for key, run in runners.items():
            times[key].append(time_per_step(run, args.steps))
    ms = {key: statistics.median(values) for key, values in times.items()}

    print(f"device: {jax.devices()[0].device_kind} x{jax.device_count()}, batch {args.batch}, "
          f"{args.steps} steps x {args.repeats} repeats (median ms/step)")  # fmt: skip
    print(f"{'model':<18} {'mode':<9} {'custom':>8} {'autodiff':>9} {'autodiff/custom':>16} {'torch':>8}")
    for name in models:
        for mode in ("separate", "scan"):
            custom, auto = ms[(name, "custom", mode)], ms[(name, "autodiff", mode)]
            peer_ms = ms.get((name, "torch", mode))
            peer_text = f"{peer_ms:8.1f}" if peer_ms is not None else f"{'-':>8}"
            print(f"{name:<18} {mode:<9} {custom:8.1f} {auto:9.1f} {auto / custom:15.2f}x {peer_text}")


if __name__ == "__main__":
    main()
