"""Convolution layers: ``Conv``, ``ConvTranspose`` and ``FixedConv``.

Thin wrappers around [`funcnn.ops.conv`][funcnn.ops.conv.conv]: each constructor parses its
arguments once (``conv_args``), ``init`` and every ``apply`` trace resolve
them once for the input's shape (``resolve_conv``) and hand the resolved
config to the op, which does the arithmetic and owns the backward pass.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from funcnn import checks
from funcnn.core import Layer, LayerConfigError, Shape
from funcnn.identity import make_layer
from funcnn.ops.conv import (
    ConvConfig,
    ConvTransposeGeometry,
    apply_conv,
    conv_args,
    conv_transpose_args,
    conv_transpose_geometry,
    resolve_conv,
    resolve_conv_transpose,
)
from funcnn.shapes import conv_transpose_flops, dot_flops

Initializer = Callable[..., jax.Array]

_PAD_MODES = {"zeros": None, "reflect": "reflect", "replicate": "edge", "circular": "wrap"}
"""``padding_mode`` to ``jnp.pad``'s mode (``None``: zero padding inside the convolution)."""


def padding_mode_arg(layer: str, padding_mode: Any, padding: checks.PaddingSpec) -> str:
    """Check ``padding_mode`` (one of ``_PAD_MODES``) and, for a mode other than ``"zeros"``,
    that an explicit ``padding`` is non-negative (a padding mode cannot crop)."""
    if not isinstance(padding_mode, str) or padding_mode not in _PAD_MODES:
        raise LayerConfigError(
            f"{layer}: argument `padding_mode` must be one of {tuple(_PAD_MODES)}, got {padding_mode!r}"
        )
    if padding_mode != "zeros" and not isinstance(padding, str):
        flat = (padding,) if isinstance(padding, int) else sum(padding, ())
        if any(p < 0 for p in flat):
            raise LayerConfigError(
                f"{layer}: argument `padding` {padding} must be non-negative with "
                f"padding_mode={padding_mode!r}"
            )
    return padding_mode


def check_padding_reach(
    layer: str, padding_mode: str, pads: tuple[tuple[int, int], ...], spatial: Shape, role: str
) -> None:
    """At most what ``jnp.pad`` reads from the padded array per side: ``n - 1`` rows for
    ``reflect``, ``n`` for ``circular`` (PyTorch's rule); ``role`` names the array (the
    convolution's ``"input"``, a transposed convolution's ``"output"``)."""
    limit = {"reflect": 1, "circular": 0}.get(padding_mode)  # rows a side may read, minus n
    if limit is not None and any(max(p) > n - limit for n, p in zip(spatial, pads)):
        raise LayerConfigError(
            f"{layer}: argument `padding` {pads} is too large for padding_mode={padding_mode!r} "
            f"and {role} spatial shape {tuple(spatial)}: at most {'n - 1' if limit else 'n'} per side"
        )


def fold_padding(y: jax.Array, pads: tuple[tuple[int, int], ...], padding_mode: str) -> jax.Array:
    """The transpose (adjoint) of ``jnp.pad(x, pads, mode)`` over the spatial axes of ``y``.

    ``jnp.pad`` copies row ``src(j)`` of ``x`` into border row ``j``; its
    transpose keeps the middle rows and adds each border row onto row
    ``src(j)``: ``x'[i] = y[lo + i] + sum_{j in border, src(j) = i} y[j]``
    (``reflect``: the mirror row, ``replicate``: the edge row,
    ``circular``: the row ``n`` away).
    """
    mode = _PAD_MODES[padding_mode]
    for axis, (lo, hi) in enumerate(pads, start=1):
        n = y.shape[axis] - lo - hi
        border = np.r_[0:lo, lo + n : lo + n + hi]
        middle = lax.slice_in_dim(y, lo, lo + n, axis=axis)
        if border.size:
            source = np.pad(np.arange(n), (lo, hi), mode=mode)[border]
            index = (slice(None),) * axis + (source,)
            middle = middle.at[index].add(jnp.take(y, border, axis=axis))
        y = middle
    return y


def spatial_rank(layer: str, kernel_size: int | tuple[int, ...], input_shape: Shape) -> int:
    """Spatial rank from ``kernel_size`` (a tuple) or from the input (an int broadcasts)."""
    rank = len(input_shape) - 2 if isinstance(kernel_size, int) else len(kernel_size)
    if rank not in (1, 2, 3):
        raise LayerConfigError(
            f"{layer}: argument `x` must have rank 3, 4 or 5 (batch, 1-3 spatial dims, "
            f"channels), but has shape {tuple(input_shape)}"
        )
    if len(input_shape) != rank + 2:
        hint = ""
        if len(input_shape) == rank + 1:
            hint = f"; the batch comes first, e.g. {(-1, *input_shape)}"
        raise LayerConfigError(
            f"{layer}: argument `kernel_size` {kernel_size} is {rank}-D, so the input must "
            f"have rank {rank + 2}, but has shape {tuple(input_shape)}{hint}"
        )
    return rank


class Learned(NamedTuple):
    """The parsed arguments shared by ``Conv`` and ``ConvTranspose``."""

    layer: str
    features: int
    kernel_size: int | tuple[int, ...]
    groups: int
    use_bias: bool
    kernel_init: Initializer
    bias_init: Initializer
    dtype: jnp.dtype | None
    param_dtype: jnp.dtype
    grad: str


def parse_learned(
    layer: str, features, kernel_size, groups: int, use_bias, kernel_init, bias_init, dtype, param_dtype, grad
) -> Learned:
    """Check the constructor arguments of a convolution with parameters."""
    features = checks.positive_int(layer, "features", features)
    checks.check_divides(layer, "groups", groups, "`features`", features, "output channels")
    return Learned(
        layer,
        features,
        checks.sizes(layer, "kernel_size", kernel_size),
        groups,
        checks.boolean(layer, "use_bias", use_bias),
        checks.initializer(layer, "kernel_init", kernel_init),
        checks.initializer(layer, "bias_init", bias_init),
        checks.dtype_or_none(layer, "dtype", dtype),
        checks.dtype_or_none(layer, "param_dtype", param_dtype) or jnp.dtype(jnp.float32),
        checks.grad_mode(layer, grad),
    )


def param_shapes(spec: Learned, input_shape: Shape) -> dict[str, Shape]:
    """The one source of the parameter shapes: ``init`` builds them, every ``apply`` trace checks them."""
    rank = spatial_rank(spec.layer, spec.kernel_size, input_shape)
    channels = input_shape[-1]
    checks.check_divides(
        spec.layer, "groups", spec.groups, "the input's channels", channels, f"input shape {input_shape}"
    )
    kernel = checks.broadcast(spec.layer, "kernel_size", spec.kernel_size, rank)
    shapes = {"kernel": (*kernel, channels // spec.groups, spec.features)}
    if spec.use_bias:
        shapes["bias"] = (spec.features,)
    return shapes


def init_params(spec: Learned, key: jax.Array, shapes: dict[str, Shape]) -> dict[str, jax.Array]:
    """The kernel (and bias) from the initialisers, in ``param_dtype``."""
    kernel_key, bias_key = jax.random.split(key)
    init = {"kernel": (spec.kernel_init, kernel_key), "bias": (spec.bias_init, bias_key)}
    return {
        name: checks.initialised(
            spec.layer, f"{name}_init", init[name][0], init[name][1], shape, spec.param_dtype
        )
        for name, shape in shapes.items()
    }


def checked_input(
    spec: Learned, params: Any, x: Any
) -> tuple[jax.Array, dict[str, Shape], dict[str, jax.Array]]:
    """``x`` in the compute dtype, the expected parameter shapes, and the params cast to that dtype."""
    x = checks.input_array(spec.layer, x, spec.dtype, fallback=spec.param_dtype)
    kernel = params.get("kernel") if isinstance(params, Mapping) else None
    if hasattr(kernel, "ndim"):  # the rank init fixed, when an int kernel_size leaves it open
        checks.check_rank(spec.layer, "x", x.shape, (kernel.ndim,))
    shapes = param_shapes(spec, x.shape)
    checks.check_width(spec.layer, x.shape, params, "kernel", -2, spec.groups)
    checks.check_leaves(spec.layer, "params", shapes, params, f"an input of shape {tuple(x.shape)}")
    return x, shapes, {name: params[name].astype(x.dtype) for name in shapes}


def Conv(
    features: int,
    kernel_size: int | Sequence[int],
    strides: int | Sequence[int] = 1,
    padding: checks.Padding = "VALID",
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
    grad: str | None = None,
) -> Layer:
    """N-D convolution layer, channels last (NHWC input, HWIO kernel).

    The rank (1-D, 2-D, 3-D) is the length of ``kernel_size``; an int
    ``kernel_size`` broadcasts to the input's spatial rank. Output size per
    axis: ``floor((n + lo + hi - d (f - 1) - 1) / s) + 1``
    ([`funcnn.shapes.conv_output_size`][funcnn.shapes.conv_output_size]).

    Args:
      features: output channels, a positive int.
      kernel_size: kernel spatial size, a positive int (broadcast to the input's spatial rank)
        or 1 to 3 of them (which fixes the spatial rank).
      strides: window step, a positive int (broadcasts) or one per spatial axis; default 1.
      padding: ``"VALID"`` (default), ``"SAME"`` (output ``ceil(n / s)``, the extra row on the
        high side), an int for every side, or per axis an int or a ``(low, high)`` pair;
        negative entries crop.
      dilation: kernel dilation, a positive int or one per spatial axis; default 1.
      groups: feature groups, dividing both the input channels and ``features``
        (``groups == in_channels``: depthwise); default 1.
      use_bias: add a learned bias.
      kernel_init: a ``jax.nn.initializers`` function for the kernel.
      bias_init: a ``jax.nn.initializers`` function for the bias.
      padding_mode: ``"zeros"``, or ``"reflect"``, ``"replicate"``, ``"circular"``
        (done with ``jnp.pad``, then a VALID convolution).
      dtype: computation dtype (inputs and parameters are cast to it); ``None``
        keeps a floating input's dtype and computes integer inputs in ``param_dtype``.
      param_dtype: dtype of the parameters.
      precision: passed to ``lax.conv_general_dilated`` forward and backward.
      grad: ``"custom"`` (hand-written VJP and JVP), ``"custom_vjp"`` or ``"autodiff"``;
        ``None`` takes the mode in force ([`grad_mode`][funcnn.core.grad_mode]).

    Shapes:
      Input ``(N, *spatial, C)``, channels last, 1 to 3 spatial axes (``len(kernel_size)`` of them when
        ``kernel_size`` is a sequence), ``C`` a multiple of ``groups``.
      Output ``(N, *spatial', features)``; per axis of length ``n``, with kernel size ``f``, stride ``s`` and
        dilation ``d``: ``spatial' = floor((n + lo + hi - d (f - 1) - 1) / s) + 1`` for ``"VALID"``
        (``lo = hi = 0``) and explicit padding ``(lo, hi)``, and ``spatial' = ceil(n / s)`` for ``"SAME"``,
        whatever the ``padding_mode``.

    Returns:
      The layer, an ``(init, apply)`` pair; ``init`` builds the params ``kernel``, of shape
        ``(*k, C // groups, features)`` for the kernel size ``k`` per axis, and ``bias``, of shape
        ``(features,)`` (only with ``use_bias``), both in ``param_dtype``, and no state (``()``).

    Raises:
      LayerConfigError: at construction, when ``features`` or ``groups`` is not a positive int,
        ``kernel_size``, ``strides`` or ``dilation`` is not a positive int or 1 to 3 of them (or their
        sequences differ in length), ``padding`` has none of its forms, ``groups`` does not divide
        ``features``, ``padding_mode`` is unknown or not ``"zeros"`` with a negative ``padding``, ``use_bias``
        is not a bool, an initialiser is not callable, ``dtype`` or ``param_dtype`` is not a floating dtype
        JAX holds, or ``precision`` or ``grad`` is not one of its values. At ``init`` and when ``apply`` is
        traced, when the input's rank is not 3 to 5 or not ``len(kernel_size) + 2``, ``groups`` does not
        divide its channels, ``strides``, ``dilation`` or the ``padding`` pairs do not have one entry per
        spatial axis, the dilated kernel is larger than the padded input, or a side's padding exceeds
        ``n - 1`` with ``"reflect"`` or ``n`` with ``"circular"``. At ``init``, when an initialiser fails or
        returns no floating array of the parameter's shape; when ``apply`` is traced, when ``x`` is not a real
        array, its channels or rank differ from those ``init`` was given, or ``params`` lack a leaf ``init``
        builds, hold another or one of another shape.

    Examples:
        >>> import jax
        >>> shape, params, _ = Conv(8, 3, padding="SAME").init(jax.random.key(0), (-1, 28, 28, 1))
        >>> shape, params["kernel"].shape
        ((-1, 28, 28, 8), (3, 3, 1, 8))
    """
    name = "Conv"
    args = conv_args(
        name, strides=strides, padding=padding, dilation=dilation, groups=groups, precision=precision
    )
    learned = parse_learned(
        name, features, kernel_size, args.groups, use_bias, kernel_init, bias_init, dtype, param_dtype, grad
    )
    checks.per_axis(name, kernel_size=learned.kernel_size, strides=args.strides, dilation=args.dilation)
    padding_mode = padding_mode_arg(name, padding_mode, args.padding)

    def resolve(input_shape: Shape, kernel_shape: Shape) -> ConvConfig:
        config = resolve_conv(name, args, input_shape, kernel_shape, "kernel_size")
        check_padding_reach(name, padding_mode, config.padding, input_shape[1:-1], "input")
        return config

    def init(key, input_shape):
        shapes = param_shapes(learned, input_shape)
        config = resolve(input_shape, shapes["kernel"])
        return (input_shape[0], *config.out_spatial, learned.features), init_params(learned, key, shapes), ()

    def apply(params, state, x, *, key=None, train=False):
        x, shapes, p = checked_input(learned, params, x)
        config = resolve(x.shape, shapes["kernel"])
        if padding_mode != "zeros":
            x = jnp.pad(x, ((0, 0), *config.padding, (0, 0)), mode=_PAD_MODES[padding_mode])
            config = config._replace(padding=((0, 0),) * len(config.padding))
        return apply_conv(config, x, p["kernel"], p.get("bias"), learned.grad), state

    return make_layer(name, init, apply, flops=dot_flops)


def ConvTranspose(
    features: int,
    kernel_size: int | Sequence[int],
    strides: int | Sequence[int] = 1,
    padding: checks.Padding = "VALID",
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
    use_bias: bool = True,
    kernel_init: Initializer = jax.nn.initializers.lecun_normal(),
    bias_init: Initializer = jax.nn.initializers.zeros,
    *,
    output_padding: int | Sequence[int] = 0,
    output_shape: int | Sequence[int] | None = None,
    padding_mode: str = "zeros",
    dtype: jnp.dtype | None = None,
    param_dtype: jnp.dtype = jnp.float32,
    precision: lax.Precision | None = None,
    grad: str | None = None,
) -> Layer:
    """Transposed convolution layer (the gradient-shaped "deconvolution"), channels last.

    Implemented as a convolution whose input is dilated by ``strides``
    ([`funcnn.ops.conv_transpose`][funcnn.ops.conv_transpose]; the kernel is not flipped, as in Flax).
    ``padding`` is the padding ``(lo, hi)`` of the forward convolution being
    transposed, and the output length per axis is the input length ``L`` of
    that convolution, one that it maps back to ``n`` (for an ``output_padding``
    smaller than the stride):

    * explicit padding (``"VALID"``, an int, pairs):
      ``L = (n - 1) s + d (f - 1) + 1 - lo - hi + output_padding``;
    * ``"SAME"``: ``L = n s - output_padding`` (as Equinox), so the
      ``Conv(padding="SAME")`` of stride ``s`` maps it back to
      ``ceil(L / s) = n``; the transposed padding is the SAME padding of a
      length-``L`` input.

    ``features``, ``kernel_size``, ``strides``, ``padding``, ``dilation``,
    ``groups``, ``use_bias``, ``kernel_init``, ``bias_init``, ``dtype``,
    ``param_dtype``, ``precision`` and ``grad`` are as in [`Conv`][funcnn.layers.conv.Conv].

    Args:
      features: output channels, a positive int.
      kernel_size: kernel spatial size, a positive int (broadcast to the input's spatial rank)
        or 1 to 3 of them (which fixes the spatial rank).
      strides: the forward convolution's stride, which upsamples by that factor; a positive int
        or one per spatial axis; default 1.
      padding: the forward convolution's padding: ``"VALID"`` (default), ``"SAME"``, an int for
        every side, or per axis an int or a ``(low, high)`` pair; negative entries (zero padding
        only) lengthen the output.
      dilation: kernel dilation, a positive int or one per spatial axis; default 1.
      groups: feature groups, dividing both the input channels and ``features``; default 1.
      use_bias: add a learned bias.
      kernel_init: a ``jax.nn.initializers`` function for the kernel.
      bias_init: a ``jax.nn.initializers`` function for the bias.
      output_padding: picks among the lengths ``L`` a strided convolution maps
        to the same ``n``: extra rows on the high side for explicit padding
        (smaller than the stride or the dilation, PyTorch's rule), rows fewer
        than ``n s`` for ``"SAME"`` (smaller than the stride).
      output_shape: the output's spatial sizes (an int broadcasts; without the
        batch and channels, unlike ``tf.nn.conv_transpose``), solved for
        ``output_padding`` at ``init`` and at trace time; an error lists the
        reachable sizes when no allowed ``output_padding`` gives it.
        ``output_padding`` must then be 0.
      padding_mode: ``"zeros"``, ``"reflect"``, ``"replicate"`` or
        ``"circular"``: the transpose of ``Conv`` with the same
        ``padding_mode``, i.e. of ``jnp.pad`` then a VALID convolution. The
        transposed convolution computes all ``L + lo + hi`` rows of the padded
        input, then each border row is added onto the row ``jnp.pad`` copied it
        from (``fold_padding``), then the bias. With the kernel flipped
        and its in/out channels swapped, ``ConvTranspose(..., padding_mode=m)``
        is the linear transpose of ``Conv(..., padding_mode=m)`` with the same
        strides, padding and dilation; ``"circular"`` with ``"SAME"`` (and no
        ``output_padding``) is Equinox's and Flax's circular ``ConvTranspose``,
        a periodic output of ``n s`` rows. ``padding`` must be non-negative and,
        as in ``Conv``, at most ``L - 1`` (``reflect``) or ``L`` (``circular``)
        per side.
      dtype: computation dtype (inputs and parameters are cast to it); ``None``
        keeps a floating input's dtype and computes integer inputs in ``param_dtype``.
      param_dtype: dtype of the parameters.
      precision: passed to ``lax.conv_general_dilated`` forward and backward.
      grad: ``"custom"`` (hand-written VJP and JVP), ``"custom_vjp"`` or ``"autodiff"``;
        ``None`` takes the mode in force ([`grad_mode`][funcnn.core.grad_mode]).

    Shapes:
      Input ``(N, *spatial, C)``, channels last, 1 to 3 spatial axes (``len(kernel_size)`` of them when
        ``kernel_size`` is a sequence), ``C`` a multiple of ``groups``.
      Output ``(N, *spatial', features)``; per axis of length ``n``, with kernel size ``f``, stride ``s``,
        dilation ``d`` and output padding ``p``: ``spatial' = (n - 1) s + d (f - 1) + 1 - lo - hi + p`` for
        ``"VALID"`` (``lo = hi = 0``) and explicit padding ``(lo, hi)``, and ``spatial' = n s - p`` for
        ``"SAME"``, whatever the ``padding_mode``; ``spatial' = output_shape`` when that is given.

    Returns:
      The layer, an ``(init, apply)`` pair; ``init`` builds the params ``kernel``, of shape
        ``(*k, C // groups, features)`` for the kernel size ``k`` per axis, and ``bias``, of shape
        ``(features,)`` (only with ``use_bias``), both in ``param_dtype``, and no state (``()``).

    Raises:
      LayerConfigError: at construction, when ``features`` or ``groups`` is not a positive int,
        ``kernel_size``, ``strides``, ``dilation`` or ``output_shape`` is not a positive int or 1 to 3 of
        them, ``output_padding`` is not a non-negative int or 1 to 3 of them, sequences among ``kernel_size``,
        ``strides``, ``dilation`` and ``output_shape``, or among ``strides``, ``dilation`` and
        ``output_padding``, differ in length, ``padding`` has none of its forms, ``output_padding`` is not
        smaller than ``max(stride, dilation)`` (with ``"SAME"``: than the stride) on an axis or not 0 with
        ``output_shape``, ``groups`` does not divide ``features``, ``padding_mode`` is unknown or not
        ``"zeros"`` with a negative ``padding``, ``use_bias`` is not a bool, an initialiser is not callable,
        ``dtype`` or ``param_dtype`` is not a floating dtype JAX holds, or ``precision`` or ``grad`` is not
        one of its values. At ``init`` and when ``apply`` is traced, when the input's rank is not 3 to 5 or
        not ``len(kernel_size) + 2``, ``groups`` does not divide its channels, a per-axis argument or the
        ``padding`` pairs do not have one entry per spatial axis, no allowed output padding gives
        ``output_shape`` (the message lists the reachable sizes), the output would be empty, or a side's
        padding exceeds ``L - 1`` with ``"reflect"`` or ``L`` with ``"circular"`` for the output length ``L``.
        At ``init``, when an initialiser fails or returns no floating array of the parameter's shape; when
        ``apply`` is traced, when ``x`` is not a real array, its channels or rank differ from those ``init``
        was given, or ``params`` lack a leaf ``init`` builds, hold another or one of another shape.
    """
    name = "ConvTranspose"
    forward = conv_args(
        name, strides=strides, padding=padding, dilation=dilation, groups=groups, precision=precision
    )
    args = conv_transpose_args(name, forward, output_padding, output_shape)
    learned = parse_learned(
        name,
        features,
        kernel_size,
        args.conv.groups,
        use_bias,
        kernel_init,
        bias_init,
        dtype,
        param_dtype,
        grad,
    )
    sizes = {"kernel_size": learned.kernel_size, "strides": args.conv.strides, "dilation": args.conv.dilation}
    if args.output_shape is not None:
        sizes["output_shape"] = args.output_shape
    checks.per_axis(name, **sizes)
    padding_mode = padding_mode_arg(name, padding_mode, args.conv.padding)

    def resolve(input_shape: Shape, kernel_shape: Shape) -> tuple[ConvConfig, ConvTransposeGeometry]:
        """The transposed convolution's config (uncropped under a padding mode) and its geometry."""
        geometry = conv_transpose_geometry(name, args, input_shape, kernel_shape)
        crop = padding_mode == "zeros"
        config = resolve_conv_transpose(name, args, input_shape, kernel_shape, crop=crop)
        check_padding_reach(name, padding_mode, geometry.forward_padding, geometry.out_spatial, "output")
        return config, geometry

    def init(key, input_shape):
        shapes = param_shapes(learned, input_shape)
        _, geometry = resolve(input_shape, shapes["kernel"])
        out_shape = (input_shape[0], *geometry.out_spatial, learned.features)
        return out_shape, init_params(learned, key, shapes), ()

    def apply(params, state, x, *, key=None, train=False):
        x, shapes, p = checked_input(learned, params, x)
        config, geometry = resolve(x.shape, shapes["kernel"])
        if padding_mode == "zeros":
            return apply_conv(config, x, p["kernel"], p.get("bias"), learned.grad), state
        y = apply_conv(config, x, p["kernel"], None, learned.grad)
        y = fold_padding(y, geometry.forward_padding, padding_mode)
        if "bias" in p:
            y = y + lax.broadcast_to_rank(p["bias"], y.ndim)
        return y, state

    return make_layer(name, init, apply, flops=conv_transpose_flops)


def FixedConv(
    kernel: jax.Array,
    strides: int | Sequence[int] = 1,
    padding: checks.Padding = "VALID",
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
    *,
    grad: str | None = None,
) -> Layer:
    """A convolution with a fixed, untrained kernel (no parameters), e.g. a classic filter.

    An integer kernel is used in the default float; inputs compute in the
    kernel's dtype unless they are floating themselves.

    Args:
      kernel: the kernel, an array of shape ``(*k, C // groups, C_out)`` (HWIO for 2-D) with 1 to
        3 spatial axes ``k``; not trained, never in ``params``.
      strides: window step, a positive int (broadcasts) or one per spatial axis; default 1.
      padding: ``"VALID"`` (default), ``"SAME"`` (output ``ceil(n / s)``), an int for every side,
        or per axis an int or a ``(low, high)`` pair; negative entries crop.
      dilation: kernel dilation, a positive int or one per spatial axis; default 1.
      groups: feature groups, dividing ``C_out``; the input has ``kernel.shape[-2] * groups``
        channels. Default 1.
      grad: ``"custom"`` (hand-written VJP and JVP), ``"custom_vjp"`` or ``"autodiff"``;
        ``None`` takes the mode in force ([`grad_mode`][funcnn.core.grad_mode]).

    Shapes:
      Input ``(N, *spatial, C)``, channels last, with ``kernel.ndim - 2`` spatial axes and
        ``C = kernel.shape[-2] * groups``.
      Output ``(N, *spatial', C_out)``, ``C_out = kernel.shape[-1]``; per axis of length ``n``, with kernel
        size ``f``, stride ``s`` and dilation ``d``:
        ``spatial' = floor((n + lo + hi - d (f - 1) - 1) / s) + 1`` for ``"VALID"`` (``lo = hi = 0``) and
        explicit padding ``(lo, hi)``, and ``spatial' = ceil(n / s)`` for ``"SAME"``.

    Returns:
      The layer, an ``(init, apply)`` pair with no parameters and no state (``init`` gives ``()`` for both).

    Raises:
      LayerConfigError: at construction, when ``kernel`` is not a real numeric array (a list is refused) or
        its rank is not 3 to 5, ``strides`` or ``dilation`` is not a positive int or 1 to 3 of them,
        ``padding`` has none of its forms, ``groups`` is not a positive int or ``grad`` not one of its values.
        At ``init`` and when ``apply`` is traced, when ``kernel`` has an empty axis, the input's rank is not
        ``kernel.ndim``, its channels are not ``kernel.shape[-2] * groups``, ``groups`` does not divide
        ``kernel.shape[-1]``, a per-axis argument or the ``padding`` pairs do not have one entry per spatial
        axis, or the dilated kernel is larger than the padded input. When ``apply`` is traced, when ``params``
        is not empty or ``x`` is not a real array.

    Examples:
        >>> import funcnn as fn
        >>> edges = FixedConv(fn.filters.sobel(0), padding="SAME")
    """
    name = "FixedConv"
    kernel = checks.input_array(name, kernel, argument="kernel")
    checks.check_rank(name, "kernel", kernel.shape, (3, 4, 5))
    args = conv_args(name, strides=strides, padding=padding, dilation=dilation, groups=groups)
    grad = checks.grad_mode(name, grad)

    def resolve(shape: Shape) -> ConvConfig:
        checks.check_rank(name, "x", shape, (kernel.ndim,))
        return resolve_conv(name, args, shape, kernel.shape)

    def init(key, input_shape):
        return (input_shape[0], *resolve(input_shape).out_spatial, kernel.shape[-1]), (), ()

    def apply(params, state, x, *, key=None, train=False):
        checks.no_params(name, params)
        x = checks.input_array(name, x, fallback=kernel.dtype)
        config = resolve(x.shape)
        return apply_conv(config, x, kernel.astype(x.dtype), None, grad), state

    def flops(input_shape: Shape, output_shape: Shape, params: object) -> int:
        return dot_flops(input_shape, output_shape, {"kernel": kernel})

    return make_layer(name, init, apply, flops=flops)
