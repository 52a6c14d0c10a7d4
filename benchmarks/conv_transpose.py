"""Transposed convolution, stride 2, at a U-Net decoder's sizes: funcnn against Flax, Equinox and PyTorch.

One layer alone, ``y = conv_transpose(x) + b`` with 2x upsampling, at the
four up-sampling steps of a U-Net decoder (NHWC input -> features):
8x8x512 -> 256, 16x16x256 -> 128, 32x32x128 -> 64 and 64x64x64 -> 32, batch
``--batch``, float32, with two kernels: 2x2 stride 2 (the original U-Net's
"up-conv 2x2", no padding) and 3x3 stride 2 ``"SAME"`` (as Flax and Keras
users write it). The contenders:

* ``funcnn``: ``funcnn.ConvTranspose`` with its hand-written rules, and
  ``funcnn autodiff``, the same layer with ``grad="autodiff"`` (JAX's
  autodiff of its forward pass);
* ``Flax linen``: ``flax.linen.ConvTranspose`` (NHWC, HWIO kernel);
* ``Equinox``: ``eqx.nn.ConvTranspose2d`` (channels first, ``vmap``-ed over
  the batch, ``filter_jit``, as its users run it);
* ``PyTorch eager``: ``torch.nn.ConvTranspose2d`` on channels-last tensors,
  on CUDA when ``torch.cuda.is_available()``, else on the CPU.

Two modes: ``forward`` (a jitted forward pass; PyTorch's under
``torch.inference_mode``) and ``train`` (a jitted function returning the
gradient of ``sum(y**2) / 2`` with respect to the input, the kernel and the
bias; PyTorch's forward then ``backward`` with gradients on the weight, the
bias and the input).

Every contender computes the same function: they all get funcnn's
initial kernel and bias (Equinox's as OIHW, PyTorch's as IOHW with the
spatial axes flipped: PyTorch's transposed convolution is the true transpose
of its convolution, funcnn's, Flax's and Equinox's are the input-dilated
convolution with the kernel as is). Before timing, each output's shape must
be ``(N, 2H, 2W, features)``, and each JAX contender's forward output must
match funcnn's to 1e-4 (float32, ``"highest"`` precision for the check,
TF32 off for PyTorch's). PyTorch's 2x2 output must match too; its 3x3 one
(``padding=1, output_padding=1``, the only way to get ``2H`` with a 3x3
kernel there) is the others' shifted by one pixel, ``y_torch[:, :-1, :-1]
== y[:, 1:, 1:]`` (its padding is ``(1, 2)`` per axis where SAME's is
``(2, 1)``), and is checked on that overlap.

Method: for each size, kernel and mode, every contender is built and run
once (the first call, timed: "compile s"), then the contenders are
interleaved over ``--repeats`` rounds in an order rotated by one each round
(so that no contender always runs right after the same one: over a multiple
of the contender count, each takes every place equally often), each timing
``--iters`` calls in a row (the JAX results blocked on, CUDA synchronised, after the last). The
tables give the median milliseconds per call over the rounds, the spread
(min–max) and "vs PyTorch eager", PyTorch's time / the contender's (above 1
is faster than PyTorch). Each library runs with its own defaults
(``float32`` inputs; on a GPU both JAX and PyTorch may use TF32 for float32
convolutions by default).

Everything runs in this one process on one JAX device (``jax.devices()[0]``).
Unlike ``funcnn train`` and ``peers/run.py``, this script does not call
``funcnn.runtime.configure``: no CPU device per core, no huge pages, and on
CPU jaxlib's default convolutions (YNNPACK); set ``XLA_FLAGS`` yourself, e.g.
``--xla_cpu_experimental_ynn_fusion_type=-individual_convolution``, for
XLA:CPU's own. The peers are an optional extra (``pip install -e
'.[bench]'``); a missing one is skipped.

    python benchmarks/conv_transpose.py [--batch 8] [--repeats 5] [--iters 10] [--sizes all | 0 1 2 3]
                                        [--kernels 2 3] [--modes forward train] [--impls ...] [--out FILE]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import funcnn as fn

SIZES = ((8, 512, 256), (16, 256, 128), (32, 128, 64), (64, 64, 32))
"""A U-Net decoder's up-sampling steps: (input height = width, input channels, features)."""

IMPLS = ("funcnn", "funcnn autodiff", "Flax linen", "Equinox", "PyTorch eager")
NEEDS = {"Flax linen": "flax", "Equinox": "equinox", "PyTorch eager": "torch"}
MODES = ("forward", "train")
TOLERANCE = 1e-4


class Case(NamedTuple):
    """One layer: a ``(batch, size, size, channels)`` input to ``features``, a ``kernel`` x ``kernel``
    kernel of stride 2 (2: no padding; 3: ``"SAME"``)."""

    batch: int
    size: int
    channels: int
    features: int
    kernel: int

    @property
    def label(self) -> str:
        return f"{self.size}×{self.size}×{self.channels} → {self.features}"

    @property
    def kernel_label(self) -> str:
        return f"{self.kernel}×{self.kernel}/2" + (" SAME" if self.kernel == 3 else "")

    @property
    def out_shape(self) -> tuple[int, int, int, int]:
        return (self.batch, 2 * self.size, 2 * self.size, self.features)


class Contender(NamedTuple):
    """One implementation of one case: a zero-argument runner per mode (one call each), ``sync``
    (waits for a runner's result) and ``output`` (the forward output as NHWC NumPy, for the checks)."""

    runners: dict[str, Callable[[], Any]]
    sync: Callable[[Any], Any]
    output: Callable[[], np.ndarray]


def half_sum_squares(y: jax.Array) -> jax.Array:
    return 0.5 * jnp.sum(y * y)


def funcnn_layer(case: Case, grad: str = "custom") -> fn.Layer:
    padding = "VALID" if case.kernel == 2 else "SAME"
    return fn.ConvTranspose(case.features, (case.kernel, case.kernel), strides=2, padding=padding, grad=grad)


def build_funcnn(case: Case, params: dict, x: np.ndarray, grad: str) -> Contender:
    layer = funcnn_layer(case, grad)
    x = jax.device_put(x)

    def forward(p, x):
        return layer.apply(p, (), x)[0]

    jitted = jax.jit(forward)
    train = jax.jit(jax.grad(lambda p, x: half_sum_squares(forward(p, x)), argnums=(0, 1)))
    return Contender(
        {"forward": lambda: jitted(params, x), "train": lambda: train(params, x)},
        jax.block_until_ready,
        lambda: np.asarray(forward(params, x)),
    )


def build_flax(case: Case, params: dict, x: np.ndarray) -> Contender:
    import flax.linen as nn

    padding = "VALID" if case.kernel == 2 else "SAME"
    net = nn.ConvTranspose(case.features, (case.kernel, case.kernel), strides=(2, 2), padding=padding)
    x = jax.device_put(x)
    variables = {"params": dict(params)}
    expected = jax.tree.map(jnp.shape, net.init(jax.random.key(0), x[:1]))
    if jax.tree.map(jnp.shape, variables) != expected:
        raise RuntimeError(f"Flax's parameters are {expected}, funcnn's {jax.tree.map(jnp.shape, variables)}")
    forward = jax.jit(net.apply)
    train = jax.jit(jax.grad(lambda v, x: half_sum_squares(net.apply(v, x)), argnums=(0, 1)))
    return Contender(
        {"forward": lambda: forward(variables, x), "train": lambda: train(variables, x)},
        jax.block_until_ready,
        lambda: np.asarray(net.apply(variables, x)),
    )


def build_equinox(case: Case, params: dict, x: np.ndarray) -> Contender:
    import equinox as eqx

    padding = 0 if case.kernel == 2 else "SAME"
    conv = eqx.nn.ConvTranspose2d(
        case.channels, case.features, case.kernel, stride=2, padding=padding, key=jax.random.key(0)
    )
    weight = jnp.transpose(params["kernel"], (3, 2, 0, 1))  # HWIO -> OIHW, not flipped
    bias = params["bias"].reshape(case.features, 1, 1)
    if (conv.weight.shape, conv.bias.shape) != (weight.shape, bias.shape):
        raise RuntimeError(f"Equinox's parameters are {conv.weight.shape}, {conv.bias.shape}")
    conv = eqx.tree_at(lambda m: (m.weight, m.bias), conv, (weight, bias))
    x = jax.device_put(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))  # channels first

    def forward(m, x):
        return jax.vmap(m)(x)

    jitted = eqx.filter_jit(forward)
    train = eqx.filter_jit(eqx.filter_grad(lambda mx: half_sum_squares(forward(*mx))))
    return Contender(
        {"forward": lambda: jitted(conv, x), "train": lambda: train((conv, x))},
        jax.block_until_ready,
        lambda: np.moveaxis(np.asarray(forward(conv, x)), 1, -1),
    )


def torch_device():
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def build_torch(case: Case, params: dict, x: np.ndarray) -> Contender:
    import torch

    device = torch_device()
    padding = 0 if case.kernel == 2 else 1
    conv = torch.nn.ConvTranspose2d(
        case.channels, case.features, case.kernel, stride=2, padding=padding, output_padding=padding
    )
    conv = conv.to(device, memory_format=torch.channels_last)
    weight = np.flip(np.asarray(params["kernel"]), (0, 1)).transpose(2, 3, 0, 1)  # HWIO -> IOHW, flipped
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(weight.copy()))
        conv.bias.copy_(torch.from_numpy(np.array(params["bias"])))
    xt = torch.from_numpy(x).permute(0, 3, 1, 2).to(device).contiguous(memory_format=torch.channels_last)

    def forward():
        with torch.inference_mode():
            return conv(xt)

    def train():
        conv.zero_grad(set_to_none=True)
        leaf = xt.detach().requires_grad_(True)
        y = conv(leaf)
        (y.square().sum() / 2).backward()
        return leaf.grad

    def sync(_):
        if device.type == "cuda":
            torch.cuda.synchronize()

    def output():
        tf32 = torch.backends.cudnn.allow_tf32
        torch.backends.cudnn.allow_tf32 = False
        try:
            return forward().permute(0, 2, 3, 1).cpu().numpy()
        finally:
            torch.backends.cudnn.allow_tf32 = tf32

    return Contender({"forward": forward, "train": train}, sync, output)


BUILDERS: dict[str, Callable[[Case, dict, np.ndarray], Contender]] = {
    "funcnn": lambda case, params, x: build_funcnn(case, params, x, "custom"),
    "funcnn autodiff": lambda case, params, x: build_funcnn(case, params, x, "autodiff"),
    "Flax linen": build_flax,
    "Equinox": build_equinox,
    "PyTorch eager": build_torch,
}


def check(case: Case, contenders: dict[str, Contender], params: dict, x: np.ndarray) -> None:
    """Every output has the shape of 2x upsampling; every JAX one (and PyTorch's 2x2 one) matches
    funcnn's forward pass to :data:`TOLERANCE`, PyTorch's 3x3 one on the overlap of its one-pixel shift."""
    with jax.default_matmul_precision("highest"):
        reference = np.asarray(funcnn_layer(case).apply(params, (), jax.device_put(x))[0])
        outputs = {name: contender.output() for name, contender in contenders.items()}
    for name, y in outputs.items():
        if y.shape != case.out_shape:
            raise RuntimeError(
                f"{name}, {case.label} {case.kernel_label}: output {y.shape}, not {case.out_shape}"
            )
        want = reference
        if name == "PyTorch eager" and case.kernel == 3:
            y, want = y[:, :-1, :-1], reference[:, 1:, 1:]
        error = float(np.max(np.abs(y - want)))
        if not error <= TOLERANCE * max(1.0, float(np.max(np.abs(want)))):
            raise RuntimeError(
                f"{name}, {case.label} {case.kernel_label}: differs from funcnn by {error:.3g}"
            )


def time_calls(contender: Contender, mode: str, iters: int) -> float:
    """Seconds per call over ``iters`` calls in a row, waiting for the last."""
    run = contender.runners[mode]
    start = time.perf_counter()
    for _ in range(iters):
        result = run()
    contender.sync(result)
    return (time.perf_counter() - start) / iters


def benchmark(case: Case, names: list[str], modes: list[str], args: argparse.Namespace) -> dict:
    """Build and check every contender of ``case``, then per mode compile each and time them interleaved:
    ``{(mode, name): {"seconds": [...], "compile": s}}``."""
    x = np.random.default_rng(0).standard_normal(
        (case.batch, case.size, case.size, case.channels), np.float32
    )
    _, params, _ = funcnn_layer(case).init(jax.random.key(0), x.shape)
    params = {"kernel": params["kernel"], "bias": jax.random.normal(jax.random.key(1), (case.features,))}
    contenders = {name: BUILDERS[name](case, params, x) for name in names}
    check(case, contenders, params, x)
    results = {}
    for mode in modes:
        for name, contender in contenders.items():
            start = time.perf_counter()
            contender.sync(contender.runners[mode]())
            results[mode, name] = {"seconds": [], "compile": time.perf_counter() - start}
        order = list(contenders)
        for round_ in range(args.repeats):  # interleaved, so drift hits every contender alike, and
            # rotated, so no contender always runs right after the same one.
            shift = round_ % len(order)
            for name in order[shift:] + order[:shift]:
                results[mode, name]["seconds"].append(time_calls(contenders[name], mode, args.iters))
    return results


HEADER = ("input → features", "kernel", "implementation", "ms", "spread", "vs PyTorch eager", "compile s")


def table(mode: str, cases: list[Case], names: list[str], results: dict, args: argparse.Namespace) -> str:
    """One mode's markdown table: median ms per call, spread, PyTorch's time / this one, compile s."""
    device = f"{jax.devices()[0].device_kind} ({jax.default_backend()})"
    if "PyTorch eager" in names:
        import torch

        torch_name = torch.cuda.get_device_name() if torch_device().type == "cuda" else "cpu"
        device += f" for JAX, {torch_device()} ({torch_name}) for PyTorch"
    what = {"forward": "the forward pass", "train": "the gradient of sum(y²)/2 w.r.t. input, kernel, bias"}
    lines = [
        f"{mode} ({what[mode]}): {device}; batch {args.batch}, float32, transposed convolution of stride 2; "
        f"median ms per call of {args.repeats} repeat(s) of {args.iters} call(s)",
        "",
        "| " + " | ".join(HEADER) + " |",
        "|" + "---|" * len(HEADER),
    ]
    for case in cases:
        entries = {name: results[case, mode, name] for name in names}
        ms = {name: 1e3 * statistics.median(entry["seconds"]) for name, entry in entries.items()}
        for name, entry in entries.items():
            peer = ms.get("PyTorch eager")
            cells = (
                case.label,
                case.kernel_label,
                name,
                f"{ms[name]:.2f}",
                f"{1e3 * min(entry['seconds']):.2f}–{1e3 * max(entry['seconds']):.2f}",
                f"{peer / ms[name]:.2f}x" if peer else "-",
                f"{entry['compile']:.2f}",
            )
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds over the contenders")
    parser.add_argument("--iters", type=int, default=10, help="calls per timed round")
    parser.add_argument(
        "--sizes",
        nargs="+",
        default=["all"],
        help="'all' or indices into "
        + ", ".join(f"{i}: {s}x{s}x{c}->{f}" for i, (s, c, f) in enumerate(SIZES)),
    )
    parser.add_argument("--kernels", nargs="+", type=int, choices=(2, 3), default=[2, 3])
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--impls", nargs="+", choices=IMPLS, default=list(IMPLS), metavar="IMPL")
    parser.add_argument("--out", type=Path, help="also write the tables to this markdown file")
    args = parser.parse_args()
    if args.sizes == ["all"]:
        sizes = list(range(len(SIZES)))
    else:
        try:
            sizes = [int(index) for index in args.sizes]
        except ValueError:
            parser.error(f"--sizes takes 'all' or indices 0-{len(SIZES) - 1}, got {args.sizes}")
        if not all(0 <= index < len(SIZES) for index in sizes):
            parser.error(f"--sizes takes indices 0-{len(SIZES) - 1}, got {args.sizes}")
    names = []
    for name in IMPLS:
        if name not in args.impls:
            continue
        if name in NEEDS and importlib.util.find_spec(NEEDS[name]) is None:
            print(f"skipping {name}: {NEEDS[name]} is not installed (pip install -e '.[bench]')")
            continue
        names.append(name)
    cases = [Case(args.batch, *SIZES[index], kernel) for index in sizes for kernel in args.kernels]
    results = {}
    for case in cases:
        print(f"{case.label}, {case.kernel_label}: checking, compiling, timing ...", flush=True)
        for (mode, name), entry in benchmark(case, names, args.modes, args).items():
            results[case, mode, name] = entry
    tables = [table(mode, cases, names, results, args) for mode in args.modes]
    for text in tables:
        print("\n" + text, flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n\n".join(tables) + "\n", encoding="utf-8")
        print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
