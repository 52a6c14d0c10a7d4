"""Pooling layers: ``MaxPool``, ``AvgPool``, ``GlobalMaxPool``, ``GlobalAvgPool``, ``MaxUnpool``.

Output length per axis ``floor((n + lo + hi - d (f - 1) - 1) / s) + 1``
([`funcnn.shapes.conv_output_size`][funcnn.shapes.conv_output_size],
[`funcnn.shapes.pool_output_size`][funcnn.shapes.pool_output_size]
for ``d = 1``), or in ceil mode [`funcnn.shapes.ceil_pool_output_size`][funcnn.shapes.ceil_pool_output_size];
strides default to the window. Each constructor parses its arguments once
(``pool_args``); ``init`` and every ``apply`` trace resolve them once
(``resolve_pool``). Integer and bool inputs are pooled in the default float
(or ``dtype``).

A SegNet-style encoder-decoder hands the max pool's winner indices past the
layers between pool and unpool with ``parallel``; ``serial()`` (no layers)
passes the indices on unchanged::

    model = fn.serial(
        fn.Conv(16, 3, padding="SAME"), fn.Relu(),
        MaxPool(2, return_indices=True),                    # x -> (y, indices)
        fn.parallel(fn.serial(fn.Conv(16, 3, padding="SAME"), fn.Relu()), fn.serial()),
        MaxUnpool(2),                                       # (y, indices) -> x's shape
        fn.Conv(1, 3, padding="SAME"),
    )
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

from funcnn import checks
from funcnn.core import Layer, LayerConfigError
from funcnn.identity import make_layer
from funcnn.ops.pool import (
    PoolArgs,
    PoolConfig,
    apply_avg_pool,
    apply_max_pool,
    apply_max_unpool,
    check_index_range,
    pool_args,
    resolve_pool,
    resolve_unpool,
    unpool_args,
    unpool_indices,
)
from funcnn.shapes import input_size_flops, pool_flops


def _pool_layer(
    name: str,
    args: PoolArgs,
    dtype,
    pool: Callable[[PoolConfig, jax.Array], jax.Array | tuple[jax.Array, jax.Array]],
    outputs: int = 1,
) -> Layer:
    """A pooling layer; ``outputs=2`` for ``pool`` returning ``(y, indices)`` of one shape."""

    def init(key, input_shape):
        config = resolve_pool(name, args, input_shape)
        shape = (input_shape[0], *config.out_spatial, input_shape[-1])
        return (shape if outputs == 1 else (shape,) * outputs), (), ()

    def apply(params, state, x, *, key=None, train=False):
        checks.no_params(name, params)
        x = checks.input_array(name, x, dtype)
        return pool(resolve_pool(name, args, x.shape), x), state

    return make_layer(name, init, apply, flops=pool_flops(args.window))


def MaxPool(
    window: int | Sequence[int],
    strides: int | Sequence[int] | None = None,
    padding: checks.Padding = "VALID",
    *,
    dilation: int | Sequence[int] = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
    dtype: jnp.dtype | None = None,
    grad: str | None = None,
) -> Layer:
    """Max pooling over the spatial axes; ``strides`` defaults to ``window``.

    Explicit padding is at most half the (undilated) window on each side. The
    backward pass sends each output's gradient to the first maximum of its
    window in scan order (row-major), as XLA's select-and-scatter does.

    Args:
      window: window size, a positive int (broadcast to the input's spatial rank) or 1 to 3 of
        them (which fixes the spatial rank).
      strides: window step, a positive int or one per spatial axis; ``None`` (default): the
        window.
      padding: ``"VALID"`` (default), ``"SAME"`` (output ``ceil(n / s)``, the extra row on the
        high side), an int for every side, or per axis an int or a ``(low, high)`` pair;
        explicit padding is non-negative and at most ``f // 2`` on each side. Padding never wins.
      dilation: window dilation: window ``o`` takes the inputs ``s o + d k - lo``
        (PyTorch's ``dilation``).
      ceil_mode: round the number of windows up, PyTorch's rule
        ([`funcnn.shapes.ceil_pool_output_size`][funcnn.shapes.ceil_pool_output_size]): a last, partial window
        is kept where it starts on an input or on the low padding. Not with
        ``"SAME"``, which already gives ``ceil(n / s)`` windows.
      return_indices: output the pair ``(y, indices)``, ``indices`` the
        winners' flat ``int32`` indices into each example-channel's spatial
        input (PyTorch's ``return_indices``), for [`MaxUnpool`][funcnn.layers.pool.MaxUnpool]; ``init``
        then returns a pair of shapes.
      dtype: computation dtype; ``None`` keeps a floating input's dtype.
      grad: ``"custom"`` (hand-written rules, forward and reverse mode), ``"custom_vjp"`` (reverse mode
        only) or ``"autodiff"``; ``None`` takes the mode in force ([`grad_mode`][funcnn.core.grad_mode]).

    Shapes:
      Input ``(N, *spatial, C)``, channels last, with at least one spatial axis (``len(window)`` of them when
        ``window`` is a sequence).
      Output ``(N, *spatial', C)``; per axis of length ``n``, with window ``f``, stride ``s``, dilation ``d``
        and explicit padding ``(lo, hi)`` (``"VALID"``: ``(0, 0)``):
        ``spatial' = floor((n + lo + hi - d (f - 1) - 1) / s) + 1``; with ``ceil_mode``,
        ``ceil((n + lo + hi - d (f - 1) - 1) / s) + 1``, less one when that last window would start at or past
        ``n + lo``; with ``"SAME"``, ``ceil(n / s)``. With ``return_indices``, the pair ``(y, indices)`` of
        two arrays of that shape, ``indices`` in ``int32``.

    Returns:
      The layer, an ``(init, apply)`` pair with no parameters and no state (``init`` gives ``()`` for both);
        with ``return_indices``, ``init`` gives the pair of output shapes.

    Raises:
      LayerConfigError: at construction, when ``window``, ``strides`` or ``dilation`` is not a positive int or
        1 to 3 of them, ``padding`` has none of its forms or is negative, ``window`` and ``padding`` give
        different numbers of axes, explicit padding exceeds half the window (``f // 2``) on a side,
        ``ceil_mode`` is combined with ``"SAME"``, ``ceil_mode`` or ``return_indices`` is not a bool,
        ``dtype`` is not a floating dtype JAX holds or ``grad`` is not one of its values. At ``init`` and when
        ``apply`` is traced, when the input's rank is below 3, ``window``, ``strides``, ``dilation`` or the
        ``padding`` pairs do not have one entry per spatial axis, the dilated window is larger than the padded
        input, or a dilated window holds only padding. When ``apply`` is traced, when ``params`` is not empty,
        or ``x`` is not a real array or has an empty spatial axis.
    """
    args = pool_args("MaxPool", window, strides, padding, dilation=dilation, ceil_mode=ceil_mode)
    return_indices = checks.boolean("MaxPool", "return_indices", return_indices)
    dtype = checks.dtype_or_none("MaxPool", "dtype", dtype)
    grad = checks.grad_mode("MaxPool", grad)
    return _pool_layer(
        "MaxPool",
        args,
        dtype,
        lambda config, x: apply_max_pool(config, x, grad, return_indices=return_indices),
        2 if return_indices else 1,
    )


def AvgPool(
    window: int | Sequence[int],
    strides: int | Sequence[int] | None = None,
    padding: checks.Padding = "VALID",
    *,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    dtype: jnp.dtype | None = None,
    grad: str | None = None,
) -> Layer:
    """Average pooling over the spatial axes; ``strides`` defaults to ``window``.

    Args:
      window: window size, a positive int (broadcast to the input's spatial rank) or 1 to 3 of
        them (which fixes the spatial rank).
      strides: window step, a positive int or one per spatial axis; ``None`` (default): the
        window.
      padding: ``"VALID"`` (default), ``"SAME"`` (output ``ceil(n / s)``, the extra row on the
        high side), an int for every side, or per axis an int or a ``(low, high)`` pair;
        explicit padding is non-negative and at most ``f // 2`` on each side.
      ceil_mode: round the number of windows up, as [`MaxPool`][funcnn.layers.pool.MaxPool]; a last
        window that overhangs the padded input is divided by the part of it
        inside (with ``count_include_pad``), as PyTorch does.
      count_include_pad: with padding, divide every window's sum by the full
        window size (padded zeros count, PyTorch's default) when ``True``, or by
        the number of real inputs in the window when ``False``. Without padding
        the two agree.
      dtype: computation dtype; ``None`` keeps a floating input's dtype and
        averages integers in the default float.
      grad: ``"custom"`` (hand-written rules, forward and reverse mode), ``"custom_vjp"`` (reverse mode
        only) or ``"autodiff"``; ``None`` takes the mode in force ([`grad_mode`][funcnn.core.grad_mode]).

    Shapes:
      Input ``(N, *spatial, C)``, channels last, with at least one spatial axis (``len(window)`` of them when
        ``window`` is a sequence).
      Output ``(N, *spatial', C)``; per axis of length ``n``, with window ``f``, stride ``s`` and explicit
        padding ``(lo, hi)`` (``"VALID"``: ``(0, 0)``): ``spatial' = floor((n + lo + hi - f) / s) + 1``; with
        ``ceil_mode``, ``ceil((n + lo + hi - f) / s) + 1``, less one when that last window would start at or
        past ``n + lo``; with ``"SAME"``, ``ceil(n / s)``.

    Returns:
      The layer, an ``(init, apply)`` pair with no parameters and no state (``init`` gives ``()`` for both).

    Raises:
      LayerConfigError: at construction, when ``window`` or ``strides`` is not a positive int or 1 to 3 of
        them, ``padding`` has none of its forms or is negative, ``window`` and ``padding`` give different
        numbers of axes, explicit padding exceeds half the window (``f // 2``) on a side, ``ceil_mode`` is
        combined with ``"SAME"``, ``ceil_mode`` or ``count_include_pad`` is not a bool, ``dtype`` is not a
        floating dtype JAX holds or ``grad`` is not one of its values. At ``init`` and when ``apply`` is
        traced, when the input's rank is below 3, ``window``, ``strides`` or the ``padding`` pairs do not have
        one entry per spatial axis, or the window is larger than the padded input. When ``apply`` is traced,
        when ``params`` is not empty, or ``x`` is not a real array or has an empty spatial axis.
    """
    args = pool_args("AvgPool", window, strides, padding, ceil_mode=ceil_mode)
    count_include_pad = checks.boolean("AvgPool", "count_include_pad", count_include_pad)
    dtype = checks.dtype_or_none("AvgPool", "dtype", dtype)
    grad = checks.grad_mode("AvgPool", grad)
    return _pool_layer(
        "AvgPool", args, dtype, lambda config, x: apply_avg_pool(config, count_include_pad, x, grad)
    )


def _global(
    name: str, keepdims: bool, dtype, grad: str, pool: Callable[[PoolConfig, jax.Array, str], jax.Array]
) -> Layer:
    """A pool whose window is the whole image: ``(N, *spatial, C) -> (N, C)``, or
    ``(N, 1, ..., 1, C)`` with ``keepdims``."""
    keepdims = checks.boolean(name, "keepdims", keepdims)
    dtype = checks.dtype_or_none(name, "dtype", dtype)
    grad = checks.grad_mode(name, grad)

    def out_shape(shape):
        return (shape[0], *(1,) * (len(shape) - 2), shape[-1]) if keepdims else (shape[0], shape[-1])

    def init(key, input_shape):
        checks.check_rank(name, "x", input_shape, (3, 4, 5))
        return out_shape(input_shape), (), ()

    def apply(params, state, x, *, key=None, train=False):
        checks.no_params(name, params)
        x = checks.input_array(name, x, dtype)
        checks.check_rank(name, "x", x.shape, (3, 4, 5))
        config = resolve_pool(name, PoolArgs(tuple(x.shape[1:-1]), None, "VALID"), x.shape)
        return jnp.reshape(pool(config, x, grad), out_shape(x.shape)), state

    return make_layer(name, init, apply, flops=input_size_flops)


def GlobalMaxPool(
    *, keepdims: bool = False, dtype: jnp.dtype | None = None, grad: str | None = None
) -> Layer:
    """Maximum over all spatial positions: ``(N, *spatial, C) -> (N, C)``.

    A max pool whose window is the whole image, so it shares its backward rule.

    Args:
      keepdims: keep the spatial axes, of size 1: ``(N, 1, ..., 1, C)`` (Keras' ``keepdims``).
      dtype: computation dtype; ``None`` keeps a floating input's dtype.
      grad: ``"custom"`` (hand-written rules, forward and reverse mode), ``"custom_vjp"`` (reverse mode
        only) or ``"autodiff"``; ``None`` takes the mode in force ([`grad_mode`][funcnn.core.grad_mode]).

    Shapes:
      Input ``(N, *spatial, C)``, channels last, 1 to 3 spatial axes.
      Output ``(N, C)``; with ``keepdims``, ``(N, 1, ..., 1, C)`` of the input's rank.

    Returns:
      The layer, an ``(init, apply)`` pair with no parameters and no state (``init`` gives ``()`` for both).

    Raises:
      LayerConfigError: at construction, when ``keepdims`` is not a bool, ``dtype`` is not a floating dtype
        JAX holds or ``grad`` is not one of its values. At ``init`` and when ``apply`` is traced, when the
        input's rank is not 3 to 5. When ``apply`` is traced, when ``params`` is not empty, or ``x`` is not a
        real array or has an empty spatial axis.
    """
    return _global("GlobalMaxPool", keepdims, dtype, grad, apply_max_pool)


def GlobalAvgPool(
    *, keepdims: bool = False, dtype: jnp.dtype | None = None, grad: str | None = None
) -> Layer:
    """Mean over all spatial positions: ``(N, *spatial, C) -> (N, C)``.

    Args:
      keepdims: keep the spatial axes, of size 1: ``(N, 1, ..., 1, C)`` (Keras' ``keepdims``).
      dtype: computation dtype; ``None`` keeps a floating input's dtype.
      grad: ``"custom"`` (hand-written rules, forward and reverse mode), ``"custom_vjp"`` (reverse mode
        only) or ``"autodiff"``; ``None`` takes the mode in force ([`grad_mode`][funcnn.core.grad_mode]).

    Shapes:
      Input ``(N, *spatial, C)``, channels last, 1 to 3 spatial axes.
      Output ``(N, C)``; with ``keepdims``, ``(N, 1, ..., 1, C)`` of the input's rank.

    Returns:
      The layer, an ``(init, apply)`` pair with no parameters and no state (``init`` gives ``()`` for both).

    Raises:
      LayerConfigError: at construction, when ``keepdims`` is not a bool, ``dtype`` is not a floating dtype
        JAX holds or ``grad`` is not one of its values. At ``init`` and when ``apply`` is traced, when the
        input's rank is not 3 to 5. When ``apply`` is traced, when ``params`` is not empty, or ``x`` is not a
        real array or has an empty spatial axis.
    """
    return _global(
        "GlobalAvgPool", keepdims, dtype, grad, lambda config, x, grad: apply_avg_pool(config, True, x, grad)
    )


def _values_and_indices(x) -> tuple:
    """``MaxUnpool``'s input: the pair ``(values, indices)``."""
    if isinstance(x, (tuple, list)) and len(x) == 2:
        return tuple(x)
    if isinstance(x, (tuple, list)):
        kind = f"a {type(x).__name__} of {len(x)} entries"
    else:
        kind = f"an array of shape {tuple(x.shape)}" if hasattr(x, "shape") else type(x).__name__
    raise LayerConfigError(
        "MaxUnpool: argument `x` must be the pair (values, indices) that "
        f"MaxPool(..., return_indices=True) outputs, got {kind}"
    )


def MaxUnpool(
    window: int | Sequence[int],
    strides: int | Sequence[int] | None = None,
    padding: int | Sequence[int] | Sequence[tuple[int, int]] = 0,
    *,
    output_size: int | Sequence[int] | None = None,
    dtype: jnp.dtype | None = None,
    grad: str | None = None,
) -> Layer:
    """Max unpooling (SegNet): ``(values, indices) -> (N, *output_size, C)``, each value put at
    its index in zeros; ``torch.nn.MaxUnpool{1,2,3}d`` in channels-last.

    The input is the pair that ``MaxPool(..., return_indices=True)`` outputs,
    or values of that shape computed from it (pass the indices on with
    ``parallel(..., serial())``, see the module's example); ``init`` takes a
    pair of shapes. The backward pass gathers each value's gradient at its
    index; the indices get none.

    Args:
      window: the max pool's window, a positive int or 1 to 3 of them; the default output size
        per axis is ``(n - 1) s - lo - hi + f``.
      strides: the max pool's strides (default: the window).
      padding: the max pool's padding, explicit and non-negative: an int for every side, or per
        axis an int or a ``(low, high)`` pair; ``"VALID"`` is 0, ``"SAME"`` is refused.
      output_size: the output's spatial shape where the default does not
        recover the pool's input (strides that do not divide, ceil mode):
        each entry strictly within the stride of the default (PyTorch's rule).
      dtype: computation dtype of the values; ``None`` keeps a floating dtype.
      grad: ``"custom"`` (hand-written rules, forward and reverse mode), ``"custom_vjp"`` (reverse mode
        only) or ``"autodiff"``; ``None`` takes the mode in force ([`grad_mode`][funcnn.core.grad_mode]).

    Shapes:
      Input the pair ``(values, indices)``, both ``(N, *spatial, C)`` with at least one spatial axis; ``init``
        takes the pair of their shapes.
      Output ``(N, *spatial', C)``; per axis of length ``n``, with window ``f``, stride ``s`` and padding
        ``(lo, hi)``: ``spatial' = (n - 1) s - lo - hi + f``, or ``output_size`` when that is given.

    Returns:
      The layer, an ``(init, apply)`` pair with no parameters and no state (``init`` gives ``()`` for both).

    Raises:
      LayerConfigError: at construction, when ``window``, ``strides`` or ``output_size`` is not a positive int
        or 1 to 3 of them, ``padding`` has none of its forms, is negative or is ``"SAME"``, ``dtype`` is not a
        floating dtype JAX holds or ``grad`` is not one of its values. At ``init``, when ``input_shape`` is
        not a pair of shapes. At ``init`` and when ``apply`` is traced, when the indices' shape differs from
        the values', the values' rank is below 3, ``window``, ``strides``, ``output_size`` or the ``padding``
        pairs do not have one entry per spatial axis, an ``output_size`` entry is not strictly within the
        stride of the default (the message lists the allowed range), or the output would be empty. When
        ``apply`` is traced, when ``x`` is not a pair, ``values`` is not a real array, ``indices`` is not an
        integer array, concrete indices lie outside ``[0, prod(spatial'))`` (traced ones cannot be checked:
        out-of-range ones are dropped), or ``params`` is not empty.
    """
    name = "MaxUnpool"
    args = unpool_args(name, window, strides, padding, output_size)
    dtype = checks.dtype_or_none(name, "dtype", dtype)
    grad = checks.grad_mode(name, grad)

    def init(key, input_shape):
        if len(input_shape) != 2:
            raise LayerConfigError(
                f"{name}: argument `input_shape` must be the pair of shapes (values, indices), got "
                f"{len(input_shape)} shapes {input_shape}"
            )
        values_shape, indices_shape = input_shape
        out = resolve_unpool(name, args, values_shape, indices_shape, values="values")
        return (values_shape[0], *out, values_shape[-1]), (), ()

    def apply(params, state, x, *, key=None, train=False):
        checks.no_params(name, params)
        values, indices = _values_and_indices(x)
        values = checks.input_array(name, values, dtype, argument="values")
        indices = unpool_indices(name, indices)
        out = resolve_unpool(name, args, values.shape, indices.shape, values="values")
        check_index_range(name, indices, out)
        return apply_max_unpool(out, values, indices, grad), state

    return make_layer(name, init, apply, inputs="many")
