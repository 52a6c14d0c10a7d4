"""Train-step speed: hand-written VJPs (``grad="custom"``) vs JAX autodiff (``grad="autodiff"``).

Two models (the Fashion-MNIST CNN and a small ResNet), Adam, batch 128 of
28x28x1 images; each step run as separate jitted calls and as a ``lax.scan``
over the steps inside one compiled call. Every configuration is timed in
the same process, repeats interleaved, and reported as ms per step and as
the ratio autodiff / custom (> 1 means the hand-written rules are faster). The
``grad="custom_vjp"`` column runs the same hand-written VJPs through
``jax.custom_vjp`` instead of their JVP's transpose (:mod:`funcnn.ops._rules`).
With ``torch`` installed, a PyTorch train step of the same CNN is the peer
column.

A second table times each op alone, one row per hand-written rule: forward
and backward (``jax.vjp`` of the op and its pullback, jitted) with
``grad="custom"`` and ``grad="autodiff"``, and PyTorch eager's forward and
``backward`` of the same op on the same (channels-first) input, all
interleaved in one process.

    python benchmarks/vjp_vs_autodiff.py [--batch 128] [--steps 10] [--repeats 5] [--only models|ops]
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
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


class OpCase(NamedTuple):
    """One op timed alone: ``op(x, grad)`` on a channels-last ``shape``, and PyTorch's same op
    ``torch_op(torch, x)`` on the channels-first input (``None`` where PyTorch has none)."""

    label: str
    shape: tuple[int, ...]
    op: Callable[[jax.Array, str], jax.Array]
    torch_op: Callable | None = None


def op_cases(batch: int) -> list[OpCase]:
    """The ops with hand-written rules added with the layers issue, at CNN-sized shapes."""
    ops = fn.ops
    image = (batch, 28, 28, 32)
    slope = jnp.full((32,), 0.25)
    kernel = jax.random.normal(jax.random.key(3), (3, 3, 32, 16)) * 0.1
    elementwise = [
        ("relu6", ops.relu6, "relu6"), ("silu", ops.silu, "silu"), ("softplus", ops.softplus, "softplus"),
        ("softsign", ops.softsign, "softsign"), ("selu", ops.selu, "selu"), ("celu", ops.celu, "celu"),
        ("log_sigmoid", ops.log_sigmoid, "logsigmoid"), ("hard_sigmoid", ops.hard_sigmoid, "hardsigmoid"),
        ("hard_silu", ops.hard_silu, "hardswish"),
    ]  # fmt: skip
    cases = [
        OpCase(name, image, lambda x, grad, f=f: f(x, grad=grad),
               lambda t, x, n=n: getattr(t.nn.functional, n)(x))
        for name, f, n in elementwise
    ]  # fmt: skip
    cases += [
        OpCase("prelu", image, lambda x, grad: ops.prelu(x, slope, grad=grad),
               lambda t, x: t.nn.functional.prelu(x, t.full((32,), 0.25, dtype=x.dtype))),
        OpCase("adaptive_avg_pool 28->7", image, lambda x, grad: ops.adaptive_avg_pool(x, 7, grad=grad),
               lambda t, x: t.nn.functional.adaptive_avg_pool2d(x, 7)),
        OpCase("adaptive_avg_pool 28->5", image, lambda x, grad: ops.adaptive_avg_pool(x, 5, grad=grad),
               lambda t, x: t.nn.functional.adaptive_avg_pool2d(x, 5)),
        OpCase("adaptive_max_pool 28->7", image, lambda x, grad: ops.adaptive_max_pool(x, 7, grad=grad),
               lambda t, x: t.nn.functional.adaptive_max_pool2d(x, 7)),
        OpCase("adaptive_max_pool 28->5", image, lambda x, grad: ops.adaptive_max_pool(x, 5, grad=grad),
               lambda t, x: t.nn.functional.adaptive_max_pool2d(x, 5)),
        OpCase("max_pool 3/2 ceil_mode", image,
               lambda x, grad: ops.max_pool(x, 3, 2, ceil_mode=True, grad=grad),
               lambda t, x: t.nn.functional.max_pool2d(x, 3, 2, ceil_mode=True)),
        OpCase("avg_pool 3/2 pad 1 ceil_mode", image,
               lambda x, grad: ops.avg_pool(x, 3, 2, 1, ceil_mode=True, grad=grad),
               lambda t, x: t.nn.functional.avg_pool2d(x, 3, 2, 1, ceil_mode=True)),
        OpCase("max_pool 2 dilation 2", image, lambda x, grad: ops.max_pool(x, 2, 1, dilation=2, grad=grad),
               lambda t, x: t.nn.functional.max_pool2d(x, 2, 1, dilation=2)),
        OpCase("upsample x2 nearest", image, lambda x, grad: ops.upsample(x, 2, "nearest", grad=grad),
               lambda t, x: t.nn.functional.interpolate(x, scale_factor=2, mode="nearest")),
        OpCase("upsample x2 bilinear", image, lambda x, grad: ops.upsample(x, 2, "bilinear", grad=grad),
               lambda t, x: t.nn.functional.interpolate(x, scale_factor=2, mode="bilinear")),
        OpCase("resize 28->20 bilinear", image,
               lambda x, grad: ops.resize(x, (20, 20), "bilinear", grad=grad),
               lambda t, x: t.nn.functional.interpolate(x, size=(20, 20), mode="bilinear")),
        OpCase("standardize over C (LayerNorm)", image, lambda x, grad: ops.standardize(x, -1, grad=grad),
               lambda t, x: t.nn.functional.layer_norm(x.movedim(1, -1), (32,)).movedim(-1, 1)),
        OpCase("standardize over (H, W, C)", image, lambda x, grad: ops.standardize(x, (1, 2, 3), grad=grad),
               lambda t, x: t.nn.functional.layer_norm(x, (32, 28, 28))),
        OpCase("standardize over C, RMS (RMSNorm)", image,
               lambda x, grad: ops.standardize(x, -1, center=False, grad=grad),
               lambda t, x: t.nn.functional.rms_norm(x.movedim(1, -1), (32,), eps=1e-5).movedim(-1, 1)),
        OpCase("standardize over (H, W) (InstanceNorm)", image,
               lambda x, grad: ops.standardize(x, (1, 2), grad=grad),
               lambda t, x: t.nn.functional.instance_norm(x, eps=1e-5)),
        OpCase("conv_transpose 3x3/2 SAME output_padding 1", (batch, 16, 16, 32),
               lambda x, grad: ops.conv_transpose(
                   x, kernel, strides=2, padding="SAME", output_padding=1, grad=grad
               )),
    ]  # fmt: skip
    return cases


def op_runners(case: OpCase, seed: int = 0) -> dict[str, Callable]:
    """Zero-argument callables running the op's forward and backward: funcnn's two rules, PyTorch's."""
    x = jax.random.normal(jax.random.key(seed), case.shape)
    g = jax.random.normal(jax.random.key(seed + 1), jax.eval_shape(lambda x: case.op(x, "custom"), x).shape)
    runners = {}
    for grad in ("custom", "autodiff"):
        op = functools.partial(case.op, grad=grad)
        run = jax.jit(lambda x, g, op=op: _value_and_pullback(op, x, g))
        runners[grad] = lambda run=run: jax.block_until_ready(run(x, g))
    torch = _torch()
    if torch is not None and case.torch_op is not None:
        to_torch = lambda a: torch.from_numpy(np.moveaxis(np.asarray(a), -1, 1).copy())  # noqa: E731
        xt, gt = to_torch(x), to_torch(g)

        def peer():
            leaf = xt.detach().requires_grad_(True)
            case.torch_op(torch, leaf).backward(gt)
            return leaf.grad

        runners["torch"] = peer
    return runners


def _value_and_pullback(f: Callable, x: jax.Array, g: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``f(x)`` and ``J^T g``; both are returned, so XLA cannot drop the forward pass of either
    path (a training step needs the output too)."""
    y, pullback = jax.vjp(f, x)
    return y, pullback(g)[0]


def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def time_ops(batch: int, repeats: int, calls: int = 5) -> None:
    """Print one row per op: median ms of forward + backward, interleaved across the contenders."""
    cases = op_cases(batch)
    runners = {case.label: op_runners(case) for case in cases}
    for per_case in runners.values():  # compile and warm up
        for run in per_case.values():
            run()
    times: dict = {(label, name): [] for label, per_case in runners.items() for name in per_case}
    for _ in range(repeats):
        for label, per_case in runners.items():
            for name, run in per_case.items():
                start = time.perf_counter()
                for _ in range(calls):
                    run()
                times[(label, name)].append((time.perf_counter() - start) / calls * 1e3)
    print(f"\nops: forward + backward, median ms of {repeats} x {calls} calls (spread min-max)")
    header = ("op", "custom", "autodiff", "autodiff/custom", "torch", "torch/custom")
    print(f"{header[0]:<30} {header[1]:>16} {header[2]:>16} {header[3]:>16} {header[4]:>16} {header[5]:>13}")

    def cell(key):
        values = times.get(key)
        if not values:
            return f"{'-':>16}", None
        median = statistics.median(values)
        return f"{median:7.2f} ({min(values):.1f}-{max(values):.1f})".rjust(16), median

    for case in cases:
        custom_text, custom = cell((case.label, "custom"))
        auto_text, auto = cell((case.label, "autodiff"))
        torch_text, peer = cell((case.label, "torch"))
        peer_ratio = f"{peer / custom:12.2f}x" if peer is not None else f"{'-':>13}"
        print(f"{case.label:<30} {custom_text} {auto_text} {auto / custom:15.2f}x {torch_text} {peer_ratio}")


def time_per_step(run: Callable, steps: int) -> float:
    start = time.perf_counter()
    run()
    return (time.perf_counter() - start) / steps * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", choices=("models", "ops"), help="one of the two tables")
    args = parser.parse_args()
    if args.only != "models":
        time_ops(args.batch, args.repeats)
    if args.only == "ops":
        return

    models = {"fashion_mnist_cnn": fn.models.fashion_mnist_cnn, "small_resnet": fn.models.small_resnet}
    runners = {
        (name, grad, mode): run
        for name, model_fn in models.items()
        for grad in ("custom", "custom_vjp", "autodiff")
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
    print(
        f"{'model':<18} {'mode':<9} {'custom':>8} {'custom_vjp':>11} {'autodiff':>9} "
        f"{'custom_vjp/custom':>18} {'autodiff/custom':>16} {'torch':>8}"
    )
    for name in models:
        for mode in ("separate", "scan"):
            custom, vjp, auto = (ms[(name, grad, mode)] for grad in ("custom", "custom_vjp", "autodiff"))
            peer_ms = ms.get((name, "torch", mode))
            peer_text = f"{peer_ms:8.1f}" if peer_ms is not None else f"{'-':>8}"
            print(
                f"{name:<18} {mode:<9} {custom:8.1f} {vjp:11.1f} {auto:9.1f} "
                f"{vjp / custom:17.2f}x {auto / custom:15.2f}x {peer_text}"
            )


if __name__ == "__main__":
    main()
