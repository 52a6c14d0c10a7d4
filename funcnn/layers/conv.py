"""Convolution layers: ``Conv``, ``ConvTranspose`` and ``FixedConv``.

Thin wrappers around :func:`funcnn.ops.conv`: they check shapes and create
parameters; the op does the arithmetic and owns the backward pass.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from numbers import Integral

import jax
import jax.numpy as jnp
from jax import lax

from funcnn.core import Layer, LayerConfigError, Shape, check_channels, check_positive, check_rank
from funcnn.ops._grad import check_grad
from funcnn.ops.conv import (
    check_conv,
    conv,
    conv_config,
    conv_transpose,
    transpose_output_size,
    transpose_padding,
)
from funcnn.shapes import Padding, conv_output_size, normalize_tuple, padding_pairs

Initializer = Callable[..., jax.Array]

_PAD_MODES = {"zeros": None, "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def _spatial_rank(layer: str, kernel_size: int | Sequence[int], input_shape: Shape) -> int:
    """Spatial rank from ``kernel_size`` (a sequence) or from the input (an int broadcasts)."""
    if isinstance(kernel_size, Integral):
        rank = len(input_shape) - 2
        if rank not in (1, 2, 3):
            raise LayerConfigError(
                f"{layer}: argument `x` must have rank 3, 4 or 5 (batch, 1-3 spatial dims, "
                f"channels), but has shape {tuple(input_shape)}"
            )
        return rank
    rank = len(tuple(kernel_size))
    if rank not in (1, 2, 3):
        raise LayerConfigError(
            f"{layer}: argument `kernel_size` must have 1, 2 or 3 entries, got {tuple(kernel_size)}"
        )
    if len(input_shape) != rank + 2:
        raise LayerConfigError(
            f"{layer}: argument `kernel_size` {tuple(kernel_size)} is {rank}-D, so the input must "
            f"have rank {rank + 2}, but has shape {tuple(input_shape)}"
        )
    return rank


def _check_features(layer: str, features: int, groups: int, grad: str) -> None:
    check_grad(layer, grad)
    check_positive(layer, "features", features)
    check_positive(layer, "groups", groups)
    if features % groups:
        raise LayerConfigError(f"{layer}: argument `groups`={groups} does not divide `features`={features}")


def _check_in_channels(layer: str, input_shape: Shape, groups: int) -> int:
    channels = input_shape[-1]
    if channels % groups:
        raise LayerConfigError(
            f"{layer}: argument `groups`={groups} does not divide the input's {channels} "
            f"channels (input shape {tuple(input_shape)})"
        )
    return channels


def Conv(
    features: int,
    kernel_size: int | Sequence[int],
    strides: int | Sequence[int] = 1,
    padding: Padding = "VALID",
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
    use_bias: bool = True,
    kernel_init: Initializer = jax.nn.initializers.lecun_normal(),
    bias_init: Initializer = jax.nn.initializers.zeros,
    *,
    padding_mode: str = "zeros",
    dtype: jnp.dtype | None = None,
    param_dtype: jnp.dtype = jnp.float32,
    precision: lax.Precision | None = None,
    grad: str = "custom",
) -> Layer:
    """N-D convolution layer, channels last (NHWC input, HWIO kernel).

    The rank (1-D, 2-D, 3-D) is the length of ``kernel_size``; an int
    ``kernel_size`` broadcasts to the input's spatial rank. Output size per
    axis: ``floor((n + lo + hi - d (f - 1) - 1) / s) + 1``
    (:func:`funcnn.shapes.conv_output_size`).

    Args:
      features: output channels.
      kernel_size: kernel spatial size, an int or one entry per spatial axis.
      strides: window step (int broadcasts).
      padding: ``"VALID"``, ``"SAME"``, an int, or ``(low, high)`` pairs.
      dilation: kernel dilation.
      groups: feature groups (``groups == in_channels``: depthwise).
      use_bias: add a learned bias.
      kernel_init, bias_init: ``jax.nn.initializers`` functions.
      padding_mode: ``"zeros"``, or ``"reflect"``, ``"replicate"``, ``"circular"``
        (done with ``jnp.pad``, then a VALID convolution).
      dtype: computation dtype (inputs and parameters are cast to it); ``None`` keeps the input's.
      param_dtype: dtype of the parameters.
      precision: passed to ``lax.conv_general_dilated`` forward and backward.
      grad: ``"custom"`` (hand-written VJP) or ``"autodiff"``.

    >>> import jax
    >>> shape, params, _ = Conv(8, 3, padding="SAME").init(jax.random.key(0), (-1, 28, 28, 1))
    >>> shape, params["kernel"].shape
    ((-1, 28, 28, 8), (3, 3, 1, 8))
    """
    _check_features("Conv", features, groups, grad)
    if padding_mode not in _PAD_MODES:
        raise LayerConfigError(
            f"Conv: argument `padding_mode` must be one of {tuple(_PAD_MODES)}, got {padding_mode!r}"
        )

    def resolve(input_shape: Shape) -> tuple[tuple[int, ...], dict]:
        rank = _spatial_rank("Conv", kernel_size, input_shape)
        ksize = normalize_tuple("Conv", "kernel_size", kernel_size, rank)
        check_positive("Conv", "kernel_size", ksize)
        stride_t = normalize_tuple("Conv", "strides", strides, rank)
        dilation_t = normalize_tuple("Conv", "dilation", dilation, rank)
        check_positive("Conv", "strides", stride_t)
        check_positive("Conv", "dilation", dilation_t)
        pads = padding_pairs("Conv", padding, input_shape[1:-1], ksize, stride_t, dilation_t)
        if _PAD_MODES[padding_mode] is not None and any(p < 0 for pair in pads for p in pair):
            raise LayerConfigError(
                f"Conv: argument `padding` {pads} must be non-negative with padding_mode={padding_mode!r}"
            )
        return ksize, {"strides": stride_t, "padding": pads, "dilation": dilation_t, "groups": groups}

    def init(key, input_shape):
        ksize, config = resolve(input_shape)
        channels = _check_in_channels("Conv", input_shape, groups)
        kernel_shape = (*ksize, channels // groups, features)
        conv_config("Conv", input_shape, kernel_shape, **config)
        out_spatial = tuple(
            conv_output_size(n, f, s, p, d)
            for n, f, s, p, d in zip(
                input_shape[1:-1], ksize, config["strides"], config["padding"], config["dilation"]
            )
        )
        kernel_key, bias_key = jax.random.split(key)
        params = {"kernel": kernel_init(kernel_key, kernel_shape, param_dtype)}
        if use_bias:
            params["bias"] = bias_init(bias_key, (features,), param_dtype)
        return (input_shape[0], *out_spatial, features), params, ()

    def apply(params, state, x, *, key=None, train=False):
        kernel = params["kernel"]
        check_channels("Conv", x.shape, kernel.ndim, kernel.shape[-2] * groups)
        _, config = resolve(x.shape)
        conv_config("Conv", x.shape, kernel.shape, **config)
        dt = x.dtype if dtype is None else dtype
        bias = params.get("bias")
        x = x.astype(dt)
        if _PAD_MODES[padding_mode] is not None:
            x = jnp.pad(x, ((0, 0), *config["padding"], (0, 0)), mode=_PAD_MODES[padding_mode])
            config["padding"] = "VALID"
        y = conv(
            x,
            kernel.astype(dt),
            None if bias is None else bias.astype(dt),
            precision=precision,
            grad=grad,
            **config,
        )
        return y, state

    return Layer(init, apply)


def ConvTranspose(
    features: int,
    kernel_size: int | Sequence[int],
    strides: int | Sequence[int] = 1,
    padding: Padding = "VALID",
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
    use_bias: bool = True,
    kernel_init: Initializer = jax.nn.initializers.lecun_normal(),
    bias_init: Initializer = jax.nn.initializers.zeros,
    *,
    output_padding: int | Sequence[int] = 0,
    dtype: jnp.dtype | None = None,
    param_dtype: jnp.dtype = jnp.float32,
    precision: lax.Precision | None = None,
    grad: str = "custom",
) -> Layer:
    """Transposed convolution layer (the gradient-shaped "deconvolution"), channels last.

    Implemented as a convolution whose input is dilated by ``strides``
    (:func:`funcnn.ops.conv_transpose`). Output length per axis:
    ``(n - 1) s + d (f - 1) + 1 - lo - hi + output_padding``, where ``(lo, hi)``
    is ``padding`` read as the padding of the forward convolution being
    transposed; ``"SAME"`` gives ``n s``.

    Args:
      features, kernel_size, strides, padding, dilation, groups, use_bias,
      kernel_init, bias_init, dtype, param_dtype, precision, grad: as :func:`Conv`.
      output_padding: extra output rows on the high side, to pick among the
        input sizes a strided convolution maps to the same output size;
        must be smaller than the stride.
    """
    _check_features("ConvTranspose", features, groups, grad)

    def resolve(input_shape: Shape):
        rank = _spatial_rank("ConvTranspose", kernel_size, input_shape)
        ksize = normalize_tuple("ConvTranspose", "kernel_size", kernel_size, rank)
        check_positive("ConvTranspose", "kernel_size", ksize)
        stride_t = normalize_tuple("ConvTranspose", "strides", strides, rank)
        dilation_t = normalize_tuple("ConvTranspose", "dilation", dilation, rank)
        check_positive("ConvTranspose", "strides", stride_t)
        check_positive("ConvTranspose", "dilation", dilation_t)
        out_pad = normalize_tuple("ConvTranspose", "output_padding", output_padding, rank)
        if any(not 0 <= p < s for p, s in zip(out_pad, stride_t)):
            raise LayerConfigError(
                f"ConvTranspose: argument `output_padding` {out_pad} must be in [0, stride) for "
                f"strides {stride_t}"
            )
        pads = transpose_padding(
            "ConvTranspose", padding, input_shape[1:-1], ksize, stride_t, dilation_t, out_pad
        )
        return ksize, stride_t, dilation_t, out_pad, pads

    def init(key, input_shape):
        ksize, stride_t, dilation_t, out_pad, pads = resolve(input_shape)
        channels = _check_in_channels("ConvTranspose", input_shape, groups)
        kernel_shape = (*ksize, channels // groups, features)
        check_conv("ConvTranspose", input_shape, kernel_shape, groups)
        out_spatial = transpose_output_size(
            "ConvTranspose", input_shape, kernel_shape, stride_t, dilation_t, pads
        )
        kernel_key, bias_key = jax.random.split(key)
        params = {"kernel": kernel_init(kernel_key, kernel_shape, param_dtype)}
        if use_bias:
            params["bias"] = bias_init(bias_key, (features,), param_dtype)
        return (input_shape[0], *out_spatial, features), params, ()

    def apply(params, state, x, *, key=None, train=False):
        kernel = params["kernel"]
        check_channels("ConvTranspose", x.shape, kernel.ndim, kernel.shape[-2] * groups)
        _, stride_t, dilation_t, out_pad, pads = resolve(x.shape)
        transpose_output_size("ConvTranspose", x.shape, kernel.shape, stride_t, dilation_t, pads)
        dt = x.dtype if dtype is None else dtype
        bias = params.get("bias")
        y = conv_transpose(
            x.astype(dt),
            kernel.astype(dt),
            None if bias is None else bias.astype(dt),
            strides=stride_t,
            padding=padding,
            dilation=dilation_t,
            output_padding=out_pad,
            groups=groups,
            precision=precision,
            grad=grad,
        )
        return y, state

    return Layer(init, apply)


def FixedConv(
    kernel: jax.Array,
    strides: int | Sequence[int] = 1,
    padding: Padding = "VALID",
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
    *,
    grad: str = "custom",
) -> Layer:
    """A convolution with a fixed, untrained kernel (no parameters), e.g. a classic filter.

    >>> import funcnn as fn
    >>> edges = FixedConv(fn.filters.sobel(0), padding="SAME")
    """
    check_grad("FixedConv", grad)
    kernel = jnp.asarray(kernel)
    check_rank("FixedConv", "kernel", kernel.shape, (3, 4, 5))
    rank = kernel.ndim - 2

    def init(key, input_shape):
        check_rank("FixedConv", "x", input_shape, (rank + 2,))
        config = conv_config(
            "FixedConv",
            input_shape,
            kernel.shape,
            strides=strides,
            padding=padding,
            dilation=dilation,
            groups=groups,
        )
        out_spatial = tuple(
            conv_output_size(n, f, s, p, d)
            for n, f, s, p, d in zip(
                input_shape[1:-1], kernel.shape[:-2], config.strides, config.padding, config.rhs_dilation
            )
        )
        return (input_shape[0], *out_spatial, kernel.shape[-1]), (), ()

    def apply(params, state, x, *, key=None, train=False):
        check_channels("FixedConv", x.shape, kernel.ndim, kernel.shape[-2] * groups)
        y = conv(
            x,
            kernel.astype(x.dtype),
            strides=strides,
            padding=padding,
            dilation=dilation,
            groups=groups,
            grad=grad,
        )
        return y, state

    return Layer(init, apply)
