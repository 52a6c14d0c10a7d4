"""Pooling layers: ``MaxPool``, ``AvgPool``, ``GlobalMaxPool``, ``GlobalAvgPool``.

Output length per axis ``floor((n + lo + hi - f) / s) + 1``
(:func:`funcnn.shapes.pool_output_size`); strides default to the window.
Each constructor parses its arguments once (``pool_args``); ``init`` and
every ``apply`` trace resolve them once (``resolve_pool``). Integer and bool
inputs are pooled in the default float (or ``dtype``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

from funcnn import checks
from funcnn.core import Layer
from funcnn.identity import make_layer
from funcnn.ops.pool import PoolArgs, PoolConfig, apply_avg_pool, apply_max_pool, pool_args, resolve_pool


def _pool_layer(
    name: str, args: PoolArgs, dtype, pool: Callable[[PoolConfig, jax.Array], jax.Array]
) -> Layer:
    def init(key, input_shape):
        config = resolve_pool(name, args, input_shape)
        return (input_shape[0], *config.out_spatial, input_shape[-1]), (), ()

    def apply(params, state, x, *, key=None, train=False):
        checks.no_params(name, params)
        x = checks.input_array(name, x, dtype)
        return pool(resolve_pool(name, args, x.shape), x), state

    return make_layer(name, init, apply)


def MaxPool(
    window: int | Sequence[int],
    strides: int | Sequence[int] | None = None,
    padding: checks.Padding = "VALID",
    *,
    dtype: jnp.dtype | None = None,
    grad: str = "custom",
) -> Layer:
    """Max pooling over the spatial axes; ``strides`` defaults to ``window``.

    Explicit padding is at most half the window on each side. The backward
    pass sends each output's gradient to the first maximum of its window in
    scan order (row-major), as XLA's select-and-scatter does.
    """
    args = pool_args("MaxPool", window, strides, padding)
    dtype = checks.dtype_or_none("MaxPool", "dtype", dtype)
    grad = checks.grad_mode("MaxPool", grad)
    return _pool_layer("MaxPool", args, dtype, lambda config, x: apply_max_pool(config, x, grad))


def AvgPool(
    window: int | Sequence[int],
    strides: int | Sequence[int] | None = None,
    padding: checks.Padding = "VALID",
    *,
    count_include_pad: bool = True,
    dtype: jnp.dtype | None = None,
    grad: str = "custom",
) -> Layer:
    """Average pooling over the spatial axes; ``strides`` defaults to ``window``.

    Args:
      count_include_pad: with padding, divide every window's sum by the full
        window size (padded zeros count, PyTorch's default) when ``True``, or by
        the number of real inputs in the window when ``False``. Without padding
        the two agree.
      dtype: computation dtype; ``None`` keeps a floating input's dtype and
        averages integers in the default float.
    """
    args = pool_args("AvgPool", window, strides, padding)
    count_include_pad = checks.boolean("AvgPool", "count_include_pad", count_include_pad)
    dtype = checks.dtype_or_none("AvgPool", "dtype", dtype)
    grad = checks.grad_mode("AvgPool", grad)
    return _pool_layer(
        "AvgPool", args, dtype, lambda config, x: apply_avg_pool(config, count_include_pad, x, grad)
    )


def _global(name: str, dtype, grad: str, pool: Callable[[PoolConfig, jax.Array, str], jax.Array]) -> Layer:
    """A pool whose window is the whole image: ``(N, *spatial, C) -> (N, C)``."""
    dtype = checks.dtype_or_none(name, "dtype", dtype)
    grad = checks.grad_mode(name, grad)

    def init(key, input_shape):
        checks.check_rank(name, "x", input_shape, (3, 4, 5))
        return (input_shape[0], input_shape[-1]), (), ()

    def apply(params, state, x, *, key=None, train=False):
        checks.no_params(name, params)
        x = checks.input_array(name, x, dtype)
        checks.check_rank(name, "x", x.shape, (3, 4, 5))
        config = resolve_pool(name, PoolArgs(tuple(x.shape[1:-1]), None, "VALID"), x.shape)
        return jnp.reshape(pool(config, x, grad), (x.shape[0], x.shape[-1])), state

    return make_layer(name, init, apply)


def GlobalMaxPool(*, dtype: jnp.dtype | None = None, grad: str = "custom") -> Layer:
    """Maximum over all spatial positions: ``(N, *spatial, C) -> (N, C)``.

    A max pool whose window is the whole image, so it shares its backward rule.
    """
    return _global("GlobalMaxPool", dtype, grad, apply_max_pool)


def GlobalAvgPool(*, dtype: jnp.dtype | None = None, grad: str = "custom") -> Layer:
    """Mean over all spatial positions: ``(N, *spatial, C) -> (N, C)``."""
    return _global(
        "GlobalAvgPool", dtype, grad, lambda config, x, grad: apply_avg_pool(config, True, x, grad)
    )
