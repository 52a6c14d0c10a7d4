"""N-dimensional convolution (channels last) and transposed convolution.

Forward pass, the course's "steps of convolution" generalised: slide the
kernel ``K`` over the (padded, dilated) input ``X``, multiply, sum, add the
bias::

    Y[n, o, c_out] = b[c_out] + sum_{k, c_in} X[n, s o + d k - lo, g(c_out) c_in] K[k, c_in, c_out]

with stride ``s``, kernel dilation ``d``, low padding ``lo`` and feature group
``g(c_out)``. Layout: ``x`` is ``(N, *spatial, C_in)``, ``kernel`` is
``(*kernel_spatial, C_in / groups, C_out)``.

Backward pass: the hand-written VJP ``_conv_bwd`` (equations in its docstring,
derivation in ``docs/course/backward_conv.md``).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import NamedTuple

import jax
from jax import lax

from funcnn import checks, shapes
from funcnn.core import LayerConfigError
from funcnn.ops._grad import cotangents_like
from funcnn.ops._rules import HandWritten
from funcnn.shapes import conv_output_size, dilated_size

_SPATIAL = {1: "W", 2: "HW", 3: "DHW"}


class ConvArgs(NamedTuple):
    """A convolution's arguments, parsed and checked without shapes (at a layer's construction)."""

    strides: int | tuple[int, ...]
    padding: checks.PaddingSpec
    dilation: int | tuple[int, ...]
    lhs_dilation: int | tuple[int, ...]
    groups: int
    precision: lax.Precision | tuple | None
    preferred_element_type: jax.typing.DTypeLike | None


class ConvConfig(NamedTuple):
    """A resolved convolution (hashable, the ``nondiff_argnums`` of its VJP): sizes per spatial
    axis, explicit ``(low, high)`` pads and the output's spatial sizes."""

    strides: tuple[int, ...]
    padding: tuple[tuple[int, int], ...]
    lhs_dilation: tuple[int, ...]
    rhs_dilation: tuple[int, ...]
    groups: int
    precision: lax.Precision | tuple | None
    preferred_element_type: jax.typing.DTypeLike | None
    out_spatial: tuple[int, ...]


def dimension_numbers(rank: int) -> tuple[str, str, str]:
    """Channels-last dimension numbers for ``lax.conv_general_dilated``."""
    s = _SPATIAL[rank]
    return f"N{s}C", f"{s}IO", f"N{s}C"


def conv_args(
    op: str,
    *,
    strides: int | Sequence[int] = 1,
    padding: checks.Padding = "VALID",
    dilation: int | Sequence[int] = 1,
    lhs_dilation: int | Sequence[int] = 1,
    groups: int = 1,
    precision: lax.Precision | None = None,
    preferred_element_type: jax.typing.DTypeLike | None = None,
) -> ConvArgs:
    """Parse and check a convolution's arguments; errors name ``op`` and the argument."""
    return ConvArgs(
        checks.sizes(op, "strides", strides),
        checks.padding_spec(op, padding),
        checks.sizes(op, "dilation", dilation),
        checks.sizes(op, "lhs_dilation", lhs_dilation),
        checks.positive_int(op, "groups", groups),
        checks.precision(op, precision),
        checks.dtype_or_none(op, "preferred_element_type", preferred_element_type),
    )


def check_kernel(op: str, x_shape: Sequence[int], kernel_shape: Sequence[int], groups: int) -> int:
    """Ranks, channels and groups of ``x`` against ``kernel``; returns the spatial rank."""
    rank = len(kernel_shape) - 2
    if rank not in _SPATIAL:
        raise LayerConfigError(
            f"{op}: argument `kernel` must have rank 3, 4 or 5 (1-3 spatial dims, then in "
            f"and out channels), got shape {tuple(kernel_shape)}"
        )
    if any(d < 1 for d in kernel_shape):
        raise LayerConfigError(f"{op}: argument `kernel` has an empty axis: shape {tuple(kernel_shape)}")
    if len(x_shape) != rank + 2:
        raise LayerConfigError(
            f"{op}: argument `x` must have rank {rank + 2} (batch, {rank} spatial, channels) "
            f"for a {rank}-D kernel, but has shape {tuple(x_shape)}"
        )
    if x_shape[-1] != kernel_shape[-2] * groups:
        raise LayerConfigError(
            f"{op}: argument `x` has {x_shape[-1]} channels but the kernel expects "
            f"{kernel_shape[-2]} x {groups} groups = {kernel_shape[-2] * groups} "
            f"(x.shape={tuple(x_shape)}, kernel.shape={tuple(kernel_shape)})"
        )
    checks.check_divides(
        op, "groups", groups, "the kernel's output channels", kernel_shape[-1],
        f"kernel.shape={tuple(kernel_shape)}",
    )  # fmt: skip
    return rank


def check_bias(op: str, bias_shape: Sequence[int] | None, features: int) -> None:
    """``bias`` is ``None`` or has one entry per output channel."""
    if bias_shape is not None and tuple(bias_shape) != (features,):
        raise LayerConfigError(
            f"{op}: argument `bias` has shape {tuple(bias_shape)} but the kernel has {features} "
            f"output channels; expected ({features},)"
        )


def resolve_conv(
    op: str,
    args: ConvArgs,
    x_shape: Sequence[int],
    kernel_shape: Sequence[int],
    kernel_argument: str = "kernel",
) -> ConvConfig:
    """Resolve parsed ``args`` for these shapes: per-axis sizes, explicit pads, output sizes.

    Raises when the (dilated) kernel is larger than the padded (input-dilated) input,
    naming ``kernel_argument`` (a layer's ``kernel_size``, an op's ``kernel``).
    """
    rank = check_kernel(op, x_shape, kernel_shape, args.groups)
    strides = checks.broadcast(op, "strides", args.strides, rank)
    dilation = checks.broadcast(op, "dilation", args.dilation, rank)
    lhs_dilation = checks.broadcast(op, "lhs_dilation", args.lhs_dilation, rank)
    spatial = tuple(dilated_size(n, d) for n, d in zip(x_shape[1:-1], lhs_dilation, strict=True))
    kernel = tuple(kernel_shape[:-2])
    pads = shapes.padding_pairs(op, args.padding, spatial, kernel, strides, dilation)
    out = tuple(
        conv_output_size(n, f, s, p, d) for n, f, s, p, d in zip(spatial, kernel, strides, pads, dilation)
    )
    if any(o < 1 for o in out):
        padded = tuple(n + lo + hi for n, (lo, hi) in zip(spatial, pads, strict=True))
        span = tuple(dilated_size(f, d) for f, d in zip(kernel, dilation, strict=True))
        raise LayerConfigError(
            f"{op}: argument `{kernel_argument}` {kernel} (dilated span {span}) is larger than "
            f"the padded input {padded} (input spatial shape {tuple(x_shape[1:-1])}, padding {pads})"
        )
    return ConvConfig(
        strides, pads, lhs_dilation, dilation, args.groups, args.precision, args.preferred_element_type, out
    )


def conv_forward(config: ConvConfig, x: jax.Array, kernel: jax.Array, bias: jax.Array | None) -> jax.Array:
    """The forward convolution for a resolved ``config`` (differentiated by JAX when used directly)."""
    y = lax.conv_general_dilated(
        x,
        kernel,
        window_strides=config.strides,
        padding=config.padding,
        lhs_dilation=config.lhs_dilation,
        rhs_dilation=config.rhs_dilation,
        dimension_numbers=dimension_numbers(kernel.ndim - 2),
        feature_group_count=config.groups,
        precision=config.precision,
        preferred_element_type=config.preferred_element_type,
    )
    return y if bias is None else y + lax.broadcast_to_rank(bias.astype(y.dtype), y.ndim)


def unreached_input(config: ConvConfig, spatial: Sequence[int], kernel: Sequence[int]) -> tuple[int, ...]:
    """``r = (n' + lo + hi - f_d) mod s`` per axis: padded input past the last window.

    ``n' = l (n - 1) + 1`` is the input length after input (``lhs``) dilation
    ``l`` and ``f_d = d (f - 1) + 1`` the dilated kernel span; the last window
    ends ``r`` elements before the end of the padded input.
    """
    return tuple(
        (dilated_size(n, dl) + lo + hi - dilated_size(f, d)) % s
        for n, f, s, (lo, hi), dl, d in zip(
            spatial,
            kernel,
            config.strides,
            config.padding,
            config.lhs_dilation,
            config.rhs_dilation,
            strict=True,
        )
    )


def conv_input_grad(config: ConvConfig, g: jax.Array, kernel: jax.Array, x_shape: Sequence[int]) -> jax.Array:
    """``dL/dX``: the full cross-correlation of the stride-dilated ``g`` with the rotated kernel.

    ``rot180(K)`` with in/out channels swapped (per group), ``g`` dilated by the
    stride ``s``, padded by ``(f_d - 1 - lo, f_d - 1 - hi + r)``, kernel dilation
    ``d``, then strided by the input dilation ``l`` (``window_strides=l``).
    Returns ``(N, *spatial, C_in)`` in ``g``'s dtype (or ``preferred_element_type``).
    """
    rank = kernel.ndim - 2
    spatial_axes = tuple(range(rank))
    *kernel_spatial, group_in, c_out = kernel.shape
    groups = config.groups
    # (K, C_in/G, C_out) -> (K, C_out/G, C_in): swap in/out inside each group.
    swapped = kernel.reshape(*kernel_spatial, group_in, groups, c_out // groups)
    swapped = swapped.transpose(*spatial_axes, rank + 2, rank + 1, rank)
    swapped = swapped.reshape(*kernel_spatial, c_out // groups, groups * group_in)
    rotated = lax.rev(swapped, spatial_axes).astype(g.dtype)
    unreached = unreached_input(config, x_shape[1:-1], kernel_spatial)
    padding = tuple(
        (dilated_size(f, d) - 1 - lo, dilated_size(f, d) - 1 - hi + r)
        for f, d, (lo, hi), r in zip(
            kernel_spatial, config.rhs_dilation, config.padding, unreached, strict=True
        )
    )
    return lax.conv_general_dilated(
        g,
        rotated,
        window_strides=config.lhs_dilation,
        padding=padding,
        lhs_dilation=config.strides,
        rhs_dilation=config.rhs_dilation,
        dimension_numbers=dimension_numbers(rank),
        feature_group_count=groups,
        precision=config.precision,
        preferred_element_type=config.preferred_element_type,
    )


KERNEL_GRAD_ROWS = 16
"""Batch rows per weight-gradient convolution on CPU (``conv_kernel_grad``)."""


def conv_kernel_grad(
    config: ConvConfig, g: jax.Array, x: jax.Array, kernel_shape: Sequence[int]
) -> jax.Array:
    """``dL/dK = sum_n dL/dK_n``: on CPU, in batch chunks of ``KERNEL_GRAD_ROWS`` rows, summed.

    The sum over the batch is split into ``S = N / 16`` partial sums, each one
    convolution (``conv_kernel_grad_chunk``) over the rows ``t S + s``
    (``t = 0..15``), then added: the same numbers up to the order of the sums.
    YNNPACK's convolutions (jaxlib 0.10's default on CPU) run the weight
    gradient, whose "kernel" is the whole image, 1.2-1.45x faster on 8-16 rows
    than on 64 (the CIFAR-shaped net's layers, ``benchmarks/README.md``);
    XLA:CPU's own, which ``funcnn train`` selects
    (``funcnn.cli.use_cpu_convolutions``), run the chunks and one
    convolution at the same speed within noise. The chunks take strided rows
    so that each one is spread over the devices of a batch-sharded ``x`` like
    the batch itself, and each device sums its own rows. Elsewhere, or for a batch
    that does not split so, one convolution. A stride-1 convolution of an
    input-dilated ``X`` (a transposed convolution) takes
    ``conv_kernel_grad_dilated_input`` instead.
    """
    if all(s == 1 for s in config.strides) and any(dl > 1 for dl in config.lhs_dilation):
        return conv_kernel_grad_dilated_input(config, g, x, kernel_shape)
    batch = x.shape[0]
    if jax.default_backend() != "cpu" or batch % KERNEL_GRAD_ROWS or batch <= KERNEL_GRAD_ROWS:
        return conv_kernel_grad_chunk(config, g, x, kernel_shape)
    chunks = batch // KERNEL_GRAD_ROWS
    x = x.reshape(KERNEL_GRAD_ROWS, chunks, *x.shape[1:])
    g = g.reshape(KERNEL_GRAD_ROWS, chunks, *g.shape[1:])
    parts = [conv_kernel_grad_chunk(config, g[:, s], x[:, s], kernel_shape) for s in range(chunks)]
    return functools.reduce(lax.add, parts)


def conv_kernel_grad_chunk(
    config: ConvConfig, g: jax.Array, x: jax.Array, kernel_shape: Sequence[int]
) -> jax.Array:
    """``dL/dK`` of a batch: the padded, input-dilated ``X`` cross-correlated with ``g``.

    Written as a plain channels-last convolution on transposed operands: the
    batch axis ``N`` is the contraction ("feature") axis, ``X`` becomes the
    lhs ``(C_in/G, *spatial, G N)`` and ``g`` the rhs kernel ``(*out_spatial,
    N, C_out)``; ``feature_group_count=G`` pairs input group ``j`` with output
    group ``j``. Stride ``s`` becomes the rhs dilation, kernel dilation ``d``
    the window stride, input dilation ``l`` stays on ``X``, and the padding is
    ``(lo, hi - r)``. Returns ``(*kernel_spatial, C_in/G, C_out)``.
    """
    rank = x.ndim - 2
    batch, *spatial, c_in = x.shape
    groups = config.groups
    group_in = c_in // groups
    # (N, *spatial, C_in) -> (C_in/G, *spatial, G N).
    lhs = x.reshape(batch, *spatial, groups, group_in).astype(g.dtype)
    lhs = lhs.transpose(rank + 2, *range(1, rank + 1), rank + 1, 0)
    lhs = lhs.reshape(group_in, *spatial, groups * batch)
    # (N, *out_spatial, C_out) -> (*out_spatial, N, C_out).
    rhs = g.transpose(*range(1, rank + 1), 0, rank + 1)
    unreached = unreached_input(config, spatial, kernel_shape[:-2])
    padding = tuple((lo, hi - r) for (lo, hi), r in zip(config.padding, unreached, strict=True))
    grad = lax.conv_general_dilated(
        lhs,
        rhs,
        window_strides=config.rhs_dilation,
        padding=padding,
        lhs_dilation=config.lhs_dilation,
        rhs_dilation=config.strides,
        dimension_numbers=dimension_numbers(rank),
        feature_group_count=groups,
        precision=config.precision,
        preferred_element_type=config.preferred_element_type,
    )
    # (C_in/G, *K, C_out) -> (*K, C_in/G, C_out).
    return grad.transpose(*range(1, rank + 1), 0, rank + 1)


def conv_kernel_grad_dilated_input(
    config: ConvConfig, g: jax.Array, x: jax.Array, kernel_shape: Sequence[int]
) -> jax.Array:
    """``dL/dK`` of a stride-1 convolution of an input dilated by ``l > 1`` (a transposed
    convolution): ``dL/dY`` correlated with the undilated ``X``, read backwards.

    Per spatial axis, with input dilation ``l``, kernel dilation ``d``, low
    padding ``lo`` and stride 1, the forward pass pairs ``X[i]`` with
    ``K[k]`` at output ``o = l i + lo - d k``, so::

        dL/dK[k] = sum_{β, i} X[β, i] dL/dY[β, l i + lo - d k]

    ``conv_kernel_grad_chunk`` computes this with the dilated ``X`` as the
    input and ``dL/dY`` as the "kernel": a window the size of the whole output
    slid over an input that is mostly zeros (``l^2`` of them per real value in
    2-D), 20-50x slower on XLA:CPU for a U-Net decoder's layers
    (``benchmarks/conv_transpose.py``). Here ``dL/dY`` is the input and the
    undilated ``X`` the kernel, dilated by ``l`` (``rhs_dilation``), with
    window stride ``d`` and ``dL/dY`` padded by ``(d (f - 1) - lo,
    d (f - 1) + n' - m - (d (f - 1) - lo))`` (``f`` the kernel length, ``n'``
    the dilated input length, ``m`` the output length): output ``j`` is
    ``dL/dK[f - 1 - j]``, so the result is reversed.
    The batch is the contraction ("feature") axis as there, ``dL/dY`` laid out
    ``(C_out/G, *out_spatial, G N)`` and ``X`` ``(*spatial, N, C_in)``; with
    ``feature_group_count=G`` group ``j`` of ``dL/dY``'s channels meets group
    ``j`` of ``X``'s. Returns ``(*kernel_spatial, C_in/G, C_out)``.
    """
    rank = x.ndim - 2
    batch, *spatial, _ = x.shape
    *kernel_spatial, group_in, c_out = kernel_shape
    groups, out_spatial = config.groups, g.shape[1:-1]
    # (N, *out_spatial, C_out) -> (C_out/G, *out_spatial, G N).
    lhs = g.reshape(batch, *out_spatial, groups, c_out // groups)
    lhs = lhs.transpose(rank + 2, *range(1, rank + 1), rank + 1, 0)
    lhs = lhs.reshape(c_out // groups, *out_spatial, groups * batch)
    # (N, *spatial, C_in) -> (*spatial, N, C_in).
    rhs = x.astype(g.dtype).transpose(*range(1, rank + 1), 0, rank + 1)
    padding = []
    for n, f, dl, d, (lo, _), o in zip(
        spatial, kernel_spatial, config.lhs_dilation, config.rhs_dilation, config.padding, out_spatial,
        strict=True,
    ):  # fmt: skip
        low = d * (f - 1) - lo
        padding.append((low, d * (f - 1) + dilated_size(n, dl) - o - low))
    grad = lax.conv_general_dilated(
        lhs,
        rhs,
        window_strides=config.rhs_dilation,
        padding=padding,
        rhs_dilation=config.lhs_dilation,
        dimension_numbers=dimension_numbers(rank),
        feature_group_count=groups,
        precision=config.precision,
        preferred_element_type=config.preferred_element_type,
    )
    # (C_out/G, *K, G C_in/G) -> (*K, C_in/G, C_out), then K read backwards.
    grad = grad.reshape(c_out // groups, *kernel_spatial, groups, group_in)
    grad = grad.transpose(*range(1, rank + 1), rank + 2, rank + 1, 0)
    grad = grad.reshape(*kernel_spatial, group_in, c_out)
    return lax.rev(grad, tuple(range(rank)))


def _conv_fwd(config, x, kernel, bias):
    return conv_forward(config, x, kernel, bias), (x, kernel, bias)


def _conv_jvp(config, saved, tangents):
    """The forward equation differentiated: convolution is bilinear in ``(X, K)`` and the bias adds,
    so ``dY = conv(dX, K) + conv(X, dK) + dB`` (the terms of the zero tangents left out)."""
    x, kernel, _ = saved
    dx, dkernel, dbias = tangents
    terms = []
    if dx is not None:
        terms.append(conv_forward(config, dx, kernel, None))
    if dkernel is not None:
        terms.append(conv_forward(config, x, dkernel, None))
    if not terms:  # only the bias moves: dY = dB at every position
        shape = jax.eval_shape(functools.partial(conv_forward, config), x, kernel, None).shape
        return lax.broadcast_in_dim(dbias, shape, (len(shape) - 1,))
    dy = functools.reduce(lax.add, terms)
    return dy if dbias is None else dy + lax.broadcast_to_rank(dbias.astype(dy.dtype), dy.ndim)


def _conv_bwd(config, saved, g):
    """Hand-written VJP of the convolution, from ``lax`` primitives only.

    The course's equations, for a stride-1 VALID 2-D convolution
    ``Y_ab = B + sum_ij X_{a+i, b+j} K_ij`` and upstream gradient ``dL/dY``::

        dL/dB    = sum_ab dL/dY_ab
        dL/dK_ij = sum_ab X_{i+a, j+b} dL/dY_ab        (X cross-correlated with dL/dY)
        dL/dX    = full_xcorr(dL/dY, rot180(K))        (pad dL/dY by K - 1 on each side)

    Generalised per spatial axis, with stride ``s``, padding ``(lo, hi)`` (may
    be negative), kernel dilation ``d``, input dilation ``l``, ``G`` groups,
    input length ``n``, ``n' = l (n - 1) + 1``, kernel length ``f``, dilated
    kernel span ``f_d = d (f - 1) + 1`` and ``r = (n' + lo + hi - f_d) mod s``,
    the padded input the forward pass never reached:

    * ``dL/dB = dL/dY`` summed over batch and space.
    * ``dL/dK = X`` (dilated by ``l``, padded ``(lo, hi - r)``) cross-correlated
      with ``dL/dY``, summed over the batch: the stride becomes the dilation of
      the cotangent, the kernel dilation becomes the stride, and each of the
      ``G`` groups correlates its own input channels with its own output
      channels (in XLA terms ``batch_group_count=G`` with the channels as the
      batch; here ``feature_group_count=G`` on ``X`` laid out as
      ``(C_in/G, *spatial, G N)``, the fast path on XLA:CPU).
    * ``dL/dX`` = full cross-correlation of the stride-dilated ``dL/dY`` with the
      180-degree-rotated kernel, in/out channels swapped within each group,
      kernel dilation ``d``, padding ``(f_d - 1 - lo, f_d - 1 - hi + r)``; with
      input dilation ``l`` the result is then strided by ``l``
      (``window_strides=l``): only the real inputs get a gradient.

    ``precision`` and ``preferred_element_type`` pass through to both backward
    convolutions; cotangents come back in the primal's dtype. The rule is
    itself made of ``lax`` ops, so JAX can differentiate it (``grad`` of
    ``grad``, ``hessian``).
    """
    return cotangents_like(functools.partial(_conv_cotangents, config), saved, *saved, g)


def _conv_cotangents(config, x, kernel, bias, g):
    dx = conv_input_grad(config, g, kernel, x.shape).astype(x.dtype)
    dkernel = conv_kernel_grad(config, g, x, kernel.shape).astype(kernel.dtype)
    dbias = None if bias is None else g.sum(axis=tuple(range(g.ndim - 1))).astype(bias.dtype)
    return dx, dkernel, dbias


CONV_RULES = HandWritten("conv", conv_forward, _conv_fwd, _conv_bwd, _conv_jvp)
"""The convolution's hand-written rules (the VJP ``_conv_bwd``, the JVP ``_conv_jvp``)."""


def apply_conv(
    config: ConvConfig, x: jax.Array, kernel: jax.Array, bias: jax.Array | None, grad: str
) -> jax.Array:
    """The convolution for a resolved ``config`` (from ``resolve_conv``), operands in one dtype.

    ``grad="custom"`` differentiates with the hand-written rule, ``"autodiff"`` with JAX's.
    """
    return CONV_RULES.select(grad)(config, x, kernel, bias)


def conv(
    x: jax.Array,
    kernel: jax.Array,
    bias: jax.Array | None = None,
    *,
    strides: int | Sequence[int] = 1,
    padding: checks.Padding = "VALID",
    dilation: int | Sequence[int] = 1,
    lhs_dilation: int | Sequence[int] = 1,
    groups: int = 1,
    precision: lax.Precision | None = None,
    preferred_element_type: jax.typing.DTypeLike | None = None,
    grad: str | None = None,
) -> jax.Array:
    """N-D convolution (cross-correlation, as in deep learning), channels last.

    Integer or bool operands are promoted to the floating operands' dtype
    (the default float when there is none); complex operands are refused.

    Args:
      x: input ``(N, *spatial, C_in)``, channels last, 1 to 3 spatial axes.
      kernel: ``(*kernel_spatial, C_in / groups, C_out)`` (HWIO for 2-D), as many spatial axes as
        ``x``.
      bias: optional ``(C_out,)``, added to every output position; ``None`` (the default) adds
        nothing.
      strides: window step per spatial axis ``s``: a positive int (broadcast to every axis) or one
        per spatial axis.
      padding: ``"VALID"`` (the default), ``"SAME"`` (output ``ceil(n' / s)``; any case), an
        int for both sides of every axis, or one entry per spatial axis, an int or a
        ``(low, high)`` pair; ints may be negative (cropping).
      dilation: kernel (``rhs``) dilation ``d``: a positive int or one per spatial axis.
      lhs_dilation: input dilation ``l`` (a transposed convolution's stride): a positive int or
        one per spatial axis.
      groups: feature groups, a positive int dividing ``C_out``; ``groups == C_in`` is a depthwise
        convolution.
      precision: passed to ``lax.conv_general_dilated`` in the forward and
        the backward convolutions: ``None``, a ``lax.Precision`` or its name, a
        ``lax.DotAlgorithmPreset``, or a pair of them.
      preferred_element_type: passed to ``lax.conv_general_dilated`` in the
        forward and the backward convolutions: ``None`` or a floating dtype, the dtype to
        accumulate in and return.
      grad: ``"custom"`` (hand-written VJP and JVP), ``"custom_vjp"`` or ``"autodiff"`` (JAX's);
        ``None`` takes the mode in force ([`funcnn.grad_mode`][funcnn.core.grad_mode], ``"custom"``
        outside it).

    Returns:
      ``(N, *out_spatial, C_out)`` with ``out = floor((n' + lo + hi - d (f - 1) - 1) / s) + 1``
        per spatial axis, ``n' = l (n - 1) + 1`` the input length after input dilation (``n`` when
        ``l = 1``) and ``(lo, hi)`` its padding; in ``preferred_element_type`` when given, else in
        the dtype the operands are cast to.

    Raises:
      LayerConfigError: when the op is called (at trace time under ``jit``) if an argument is
        malformed: ``grad`` is not ``None``, ``"custom"``, ``"custom_vjp"`` or ``"autodiff"``;
        ``strides``, ``dilation`` or ``lhs_dilation`` is not a positive int or 1 to 3 of them;
        ``padding`` is none of the forms above; ``groups`` is not a positive int; ``precision`` is not
        one of the values above; ``preferred_element_type`` is not a floating dtype JAX holds
        (``float64`` needs ``jax_enable_x64``); ``x``, ``kernel`` or a given ``bias`` is not an array
        or a number or has a complex or non-numeric dtype. Or if the shapes do not fit: ``kernel``
        does not have rank 3, 4 or 5 or has an empty axis; ``x``'s rank is not ``kernel``'s;
        ``C_in != kernel.shape[-2] * groups``; ``groups`` does not divide ``C_out``; a per-axis
        ``strides``, ``dilation``, ``lhs_dilation`` or ``padding`` has a number of entries other than
        the spatial rank; the dilated kernel is larger than the padded input (an output size below 1);
        or ``bias``'s shape is not ``(C_out,)``.
    """
    checks.grad_mode("conv", grad)
    args = conv_args(
        "conv",
        strides=strides,
        padding=padding,
        dilation=dilation,
        lhs_dilation=lhs_dilation,
        groups=groups,
        precision=precision,
        preferred_element_type=preferred_element_type,
    )
    x, kernel, bias = checks.promote_operands("conv", ("x", "kernel", "bias"), x, kernel, bias)
    config = resolve_conv("conv", args, x.shape, kernel.shape)
    check_bias("conv", None if bias is None else bias.shape, kernel.shape[-1])
    return apply_conv(config, x, kernel, bias, grad)


class ConvTransposeArgs(NamedTuple):
    """A transposed convolution's parsed arguments: the forward convolution's, ``output_padding``
    and the optional ``output_shape`` target (spatial sizes)."""

    conv: ConvArgs
    output_padding: int | tuple[int, ...]
    output_shape: int | tuple[int, ...] | None = None


def conv_transpose_args(
    op: str,
    args: ConvArgs,
    output_padding: int | Sequence[int] = 0,
    output_shape: int | Sequence[int] | None = None,
) -> ConvTransposeArgs:
    """Parse a transposed convolution's ``output_padding`` and ``output_shape`` beside the forward
    convolution's parsed ``args`` (from ``conv_args``, without input dilation).

    ``output_padding`` must be in ``[0, max(stride, dilation))`` per axis (PyTorch's
    rule): more would add rows that no input reaches; with ``"SAME"`` in ``[0, stride)``,
    the lengths ``n s - p`` that a SAME convolution of stride ``s`` maps to ``n``.
    ``output_shape`` (spatial sizes, an int broadcasts) solves for the output padding at
    resolve time, so ``output_padding`` must then be 0.
    """
    out_pad = checks.sizes(op, "output_padding", output_padding, minimum=0)
    sizes = checks.per_axis(op, strides=args.strides, dilation=args.dilation, output_padding=out_pad)
    if any(p >= max(s, d) for p, s, d in zip(sizes["output_padding"], sizes["strides"], sizes["dilation"])):
        raise LayerConfigError(
            f"{op}: argument `output_padding` {sizes['output_padding']} must be smaller than the stride "
            f"{sizes['strides']} or the dilation {sizes['dilation']} on every axis"
        )
    if args.padding == "SAME" and any(p >= s for p, s in zip(sizes["output_padding"], sizes["strides"])):
        raise LayerConfigError(
            f"{op}: argument `output_padding` {sizes['output_padding']} must be smaller than the stride "
            f"{sizes['strides']} on every axis with padding='SAME' (the output is n s - output_padding, "
            "one of the lengths a SAME convolution of that stride maps back to n)"
        )
    if output_shape is None:
        return ConvTransposeArgs(args, out_pad)
    target = checks.sizes(op, "output_shape", output_shape)
    if any(sizes["output_padding"]):
        raise LayerConfigError(
            f"{op}: argument `output_padding` must be 0 when `output_shape` is given (the output padding "
            f"is solved from the target), got output_padding={out_pad!r} and output_shape={target!r}"
        )
    checks.per_axis(op, strides=args.strides, output_shape=target)
    return ConvTransposeArgs(args, out_pad, target)


class ConvTransposeGeometry(NamedTuple):
    """A transposed convolution's sizes per spatial axis, read as the forward convolution it
    transposes: that convolution's padding ``(lo, hi)`` and input length ``L`` (the transposed
    output), and ``r``, the rows of its padded input past its last window."""

    forward_padding: tuple[tuple[int, int], ...]
    unreached: tuple[int, ...]
    out_spatial: tuple[int, ...]


def _solve_output_padding(
    op: str,
    target: Sequence[int],
    spatial: Sequence[int],
    base: Sequence[int],
    limit: Sequence[int],
    sign: int,
) -> tuple[int, ...]:
    """The output padding ``p`` per axis with ``base + sign p = target`` and ``0 <= p < limit``,
    else an error listing the reachable sizes."""
    solved = tuple(sign * (t - b) for t, b in zip(target, base, strict=True))
    if all(0 <= p < m for p, m in zip(solved, limit, strict=True)):
        return solved
    reach = []
    for b, m in zip(base, limit, strict=True):
        low, high = sorted((b, b + sign * (m - 1)))
        reach.append(f"{max(low, 1)} to {high}" if high >= 1 else "none")
    raise LayerConfigError(
        f"{op}: argument `output_shape` {tuple(target)} cannot be reached from the input's spatial shape "
        f"{tuple(spatial)}: the reachable sizes are {', '.join(reach)} (one range per axis)"
    )


def conv_transpose_geometry(
    op: str, args: ConvTransposeArgs, x_shape: Sequence[int], kernel_shape: Sequence[int]
) -> ConvTransposeGeometry:
    """The forward convolution a transposed convolution transposes, for these shapes.

    Per axis, with input length ``n``, stride ``s``, dilated kernel span ``f_d`` and output
    padding ``p``: explicit padding ``(lo, hi)`` gives ``L = (n - 1) s + f_d - lo - hi + p``
    and ``r = p``; ``"SAME"`` gives ``L = n s - p`` (``p < s``), ``(lo, hi)`` the SAME
    padding of a length-``L`` input ([`funcnn.shapes.same_padding`][funcnn.shapes.same_padding]), so the SAME
    convolution of stride ``s`` maps ``L`` back to ``ceil(L / s) = n``, and
    ``r = max(s - p - f_d, 0)``. An ``output_shape`` target ``L`` fixes ``p`` instead.
    """
    rank = check_kernel(op, x_shape, kernel_shape, args.conv.groups)
    strides = checks.broadcast(op, "strides", args.conv.strides, rank)
    dilation = checks.broadcast(op, "dilation", args.conv.dilation, rank)
    output_padding = checks.broadcast(op, "output_padding", args.output_padding, rank)
    spatial = tuple(x_shape[1:-1])
    kernel = tuple(kernel_shape[:-2])
    spans = tuple(dilated_size(f, d) for f, d in zip(kernel, dilation, strict=True))
    target = args.output_shape
    if target is not None:
        target = checks.broadcast(op, "output_shape", target, rank)
    full = tuple(n * s for n, s in zip(spatial, strides, strict=True))
    if args.conv.padding == "SAME":
        if target is not None:
            output_padding = _solve_output_padding(op, target, spatial, full, strides, -1)
        lengths = tuple(m - p for m, p in zip(full, output_padding, strict=True))
        forward = shapes.padding_pairs(op, "SAME", lengths, kernel, strides, dilation)
    else:
        forward = shapes.padding_pairs(op, args.conv.padding, full, kernel, strides, dilation)
        base = tuple(m - s + k - sum(p) for m, s, k, p in zip(full, strides, spans, forward, strict=True))
        if target is not None:
            limit = tuple(max(s, d) for s, d in zip(strides, dilation, strict=True))
            output_padding = _solve_output_padding(op, target, spatial, base, limit, 1)
        lengths = tuple(b + p for b, p in zip(base, output_padding, strict=True))
    unreached = tuple(
        length + lo + hi - k - (n - 1) * s
        for length, (lo, hi), k, n, s in zip(lengths, forward, spans, spatial, strides, strict=True)
    )
    return ConvTransposeGeometry(forward, unreached, lengths)


def resolve_conv_transpose(
    op: str,
    args: ConvTransposeArgs,
    x_shape: Sequence[int],
    kernel_shape: Sequence[int],
    *,
    crop: bool = True,
) -> ConvConfig:
    """The input-dilated convolution that computes a transposed convolution.

    ``padding`` names the padding ``(lo, hi)`` of the forward convolution being
    transposed (``conv_transpose_geometry``). The transposed convolution pads
    its stride-dilated input by ``(f_d - 1 - lo, f_d - 1 - hi + r)``, giving the
    output length ``L = (n - 1) s + f_d - lo - hi + r``: for explicit padding
    ``r = output_padding``; for ``"SAME"``, ``L = n s - output_padding``.

    ``crop=False`` transposes the forward convolution's VALID part only (pads
    ``(f_d - 1, f_d - 1 + r)``), giving the ``L + lo + hi`` rows of the padded
    input, for the padding modes, which fold the ``(lo, hi)`` border back.
    """
    geometry = conv_transpose_geometry(op, args, x_shape, kernel_shape)
    rank = len(geometry.out_spatial)
    strides = checks.broadcast(op, "strides", args.conv.strides, rank)
    dilation = checks.broadcast(op, "dilation", args.conv.dilation, rank)
    kernel = tuple(kernel_shape[:-2])
    if any(o < 1 for o in geometry.out_spatial):
        raise LayerConfigError(
            f"{op}: argument `padding` leaves no output (output spatial {geometry.out_spatial}) for x.shape="
            f"{tuple(x_shape)} and kernel.shape={tuple(kernel_shape)}"
        )
    forward = geometry.forward_padding if crop else ((0, 0),) * rank
    pads = tuple(
        (dilated_size(f, d) - 1 - lo, dilated_size(f, d) - 1 - hi + r)
        for f, d, (lo, hi), r in zip(kernel, dilation, forward, geometry.unreached, strict=True)
    )
    out = tuple(
        conv_output_size(dilated_size(n, s), f, 1, p, d)
        for n, s, f, p, d in zip(x_shape[1:-1], strides, kernel, pads, dilation, strict=True)
    )
    c = args.conv
    return ConvConfig(
        (1,) * rank, pads, strides, dilation, c.groups, c.precision, c.preferred_element_type, out
    )


def conv_transpose(
    x: jax.Array,
    kernel: jax.Array,
    bias: jax.Array | None = None,
    *,
    strides: int | Sequence[int] = 1,
    padding: checks.Padding = "VALID",
    dilation: int | Sequence[int] = 1,
    output_padding: int | Sequence[int] = 0,
    output_shape: int | Sequence[int] | None = None,
    groups: int = 1,
    precision: lax.Precision | None = None,
    preferred_element_type: jax.typing.DTypeLike | None = None,
    grad: str | None = None,
) -> jax.Array:
    """Transposed convolution: a convolution whose input is dilated by ``strides``.

    As Flax's ``ConvTranspose`` (without kernel flipping): ``kernel`` is
    ``(*kernel_spatial, C_in / groups, C_out)`` and the op is a convolution
    with ``lhs_dilation=strides`` and the padding of
    ``resolve_conv_transpose``, so its VJP is the conv rule with input dilation.

    Output length per axis: ``(n - 1) s + d (f - 1) + 1 - lo - hi + output_padding``
    where ``(lo, hi)`` is ``padding`` as the forward convolution's padding;
    ``"SAME"`` gives ``n s - output_padding`` (Equinox's rule), a length that
    the SAME convolution of stride ``s`` maps back to ``n``. ``output_padding``
    must be smaller than the stride or the dilation (with ``"SAME"``: the stride).
    ``output_shape`` (the output's spatial sizes, an int broadcasts; as
    ``tf.nn.conv_transpose``'s, without batch and channels) picks
    ``output_padding`` instead: an error lists the reachable sizes when no
    allowed ``output_padding`` gives it.

    Integer or bool operands are promoted to the floating operands' dtype
    (the default float when there is none); complex operands are refused.

    Args:
      x: input ``(N, *spatial, C_in)``, channels last, 1 to 3 spatial axes.
      kernel: ``(*kernel_spatial, C_in / groups, C_out)`` (HWIO for 2-D, not flipped), as many
        spatial axes as ``x``.
      bias: optional ``(C_out,)``, added to every output position; ``None`` (the default) adds
        nothing.
      strides: the upsampling factor ``s`` (the input dilation): a positive int or one per spatial
        axis.
      padding: the padding ``(lo, hi)`` of the forward convolution being transposed, which crops
        the output: ``"VALID"`` (the default, no cropping), ``"SAME"`` (any case), an int for both
        sides of every axis, or one entry per spatial axis, an int or a ``(low, high)`` pair; ints
        may be negative (extending the output).
      dilation: kernel dilation ``d``: a positive int or one per spatial axis.
      output_padding: rows added at the high end of each spatial axis: a non-negative int or one
        per spatial axis, below ``max(s, d)`` (below ``s`` with ``"SAME"``); default 0.
      output_shape: the output's spatial sizes, a positive int (broadcast) or one per spatial
        axis, from which ``output_padding`` is solved; ``None`` (the default) to use
        ``output_padding``.
      groups: feature groups, a positive int dividing ``C_out``.
      precision: passed to ``lax.conv_general_dilated`` in the forward and the backward
        convolutions: ``None``, a ``lax.Precision`` or its name, a ``lax.DotAlgorithmPreset``, or
        a pair of them.
      preferred_element_type: passed to ``lax.conv_general_dilated`` in the forward and the
        backward convolutions: ``None`` or a floating dtype, the dtype to accumulate in and return.
      grad: ``"custom"`` (hand-written VJP and JVP), ``"custom_vjp"`` or ``"autodiff"`` (JAX's);
        ``None`` takes the mode in force ([`funcnn.grad_mode`][funcnn.core.grad_mode], ``"custom"``
        outside it).

    Returns:
      ``(N, *out_spatial, C_out)``, each ``out`` the output length above (``output_shape`` when
        given); in ``preferred_element_type`` when given, else in the dtype the operands are cast to.

    Raises:
      LayerConfigError: when the op is called (at trace time under ``jit``) if an argument is
        malformed: ``grad`` is not ``None``, ``"custom"``, ``"custom_vjp"`` or ``"autodiff"``;
        ``strides`` or ``dilation`` is not a positive int or 1 to 3 of them, ``output_padding`` not a
        non-negative int or 1 to 3 of them, ``output_shape`` not ``None``, a positive int or 1 to 3 of
        them; ``padding``, ``groups``, ``precision`` or ``preferred_element_type`` is malformed as for
        [`conv`][funcnn.ops.conv.conv]; per-axis ``strides``, ``dilation`` and ``output_padding``, or
        ``strides`` and ``output_shape``, differ in length; ``output_padding`` is not below
        ``max(s, d)`` on every axis (below ``s`` with ``"SAME"``), or not 0 with ``output_shape``
        given; ``x``, ``kernel`` or a given ``bias`` is not an array or a number or has a complex or
        non-numeric dtype. Or if the shapes do not fit: ``kernel`` and ``x`` as for
        [`conv`][funcnn.ops.conv.conv] (rank, ``C_in = kernel.shape[-2] * groups``, ``groups``
        dividing ``C_out``); a per-axis argument's length is not the spatial rank; no allowed output
        padding reaches ``output_shape`` (the message lists the reachable sizes); the padding leaves
        an output size below 1; or ``bias``'s shape is not ``(C_out,)``.
    """
    checks.grad_mode("conv_transpose", grad)
    forward = conv_args(
        "conv_transpose",
        strides=strides,
        padding=padding,
        dilation=dilation,
        groups=groups,
        precision=precision,
        preferred_element_type=preferred_element_type,
    )
    args = conv_transpose_args("conv_transpose", forward, output_padding, output_shape)
    names = ("x", "kernel", "bias")
    x, kernel, bias = checks.promote_operands("conv_transpose", names, x, kernel, bias)
    config = resolve_conv_transpose("conv_transpose", args, x.shape, kernel.shape)
    check_bias("conv_transpose", None if bias is None else bias.shape, kernel.shape[-1])
    return apply_conv(config, x, kernel, bias, grad)
