"""Adaptive pooling layers: ``AdaptiveAvgPool`` and ``AdaptiveMaxPool``.

The output's spatial size is given; along an axis of length ``n`` with ``o``
outputs, window ``i`` covers inputs ``floor(i n / o)`` to ``ceil((i + 1) n / o) - 1``
(PyTorch's rule, ``funcnn.ops.adaptive_pool``). Each constructor parses
``output_size`` once; ``init`` and every ``apply`` trace resolve it against the
input's shape. Integer and bool inputs are pooled in the default float (or ``dtype``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

from funcnn import checks
from funcnn.core import Layer
from funcnn.identity import make_layer
from funcnn.ops.adaptive_pool import (
    AdaptiveConfig,
    OutputSize,
    adaptive_args,
    apply_adaptive_avg_pool,
    apply_adaptive_max_pool,
    resolve_adaptive,
)
from funcnn.shapes import adaptive_pool_flops


def _adaptive_layer(
    name: str, output_size: OutputSize, dtype, pool: Callable[[AdaptiveConfig, jax.Array], jax.Array]
) -> Layer:
    def init(key, input_shape):
        config = resolve_adaptive(name, output_size, input_shape)
        return (input_shape[0], *config.out_spatial, input_shape[-1]), (), ()

    def apply(params, state, x, *, key=None, train=False):
        checks.no_params(name, params)
        x = checks.input_array(name, x, dtype)
        return pool(resolve_adaptive(name, output_size, x.shape), x), state

    return make_layer(name, init, apply, flops=adaptive_pool_flops)


def AdaptiveAvgPool(
    output_size: int | Sequence[int | None], *, dtype: jnp.dtype | None = None, grad: str | None = None
) -> Layer:
    """Average pooling to a given spatial size: ``(N, *spatial, C) -> (N, *output_size, C)``.

    As PyTorch's ``AdaptiveAvgPool{1,2,3}d``: output ``i`` along an axis of
    length ``n`` averages inputs ``floor(i n / o)`` to ``ceil((i + 1) n / o) - 1``,
    so windows may differ in length by one and neighbours may share an input;
    an output larger than the input repeats inputs.

    Args:
      output_size: one size for every spatial axis, or one entry per spatial
        axis (1 to 3), ``None`` keeping that axis' size.
      dtype: computation dtype; ``None`` keeps a floating input's dtype and
        averages integers in the default float.
      grad: ``"custom"`` (the hand-written rules ``dL/dX = A^T g`` per axis, forward and reverse
        mode), ``"custom_vjp"`` (reverse mode only) or ``"autodiff"``; ``None`` takes the mode in force
        ([`grad_mode`][funcnn.core.grad_mode]).

    Shapes:
      Input ``(N, *spatial, C)``, channels last, 1 to 3 spatial axes (as many as ``output_size`` has entries
        when it is a sequence).
      Output ``(N, *output_size, C)``, an int ``output_size`` on every spatial axis and a ``None`` entry
        keeping the input's size; outputs may be fewer or more than the inputs.

    Returns:
      The layer, an ``(init, apply)`` pair with no parameters and no state (``init`` gives ``()`` for both).

    Raises:
      LayerConfigError: at construction, when ``output_size`` is not a positive int or 1 to 3 entries each a
        positive int or ``None``, ``dtype`` is not a floating dtype JAX holds or ``grad`` is not one of its
        values. At ``init`` and when ``apply`` is traced, when the input's rank is not 3 to 5 or a sequence
        ``output_size`` does not have one entry per spatial axis. When ``apply`` is traced, when ``params`` is
        not empty, or ``x`` is not a real array or has an empty spatial axis.

    Examples:
        >>> AdaptiveAvgPool((7, None)).init(jax.random.key(0), (-1, 28, 28, 3))[0]
        (-1, 7, 28, 3)
    """
    output_size = adaptive_args("AdaptiveAvgPool", output_size)
    dtype = checks.dtype_or_none("AdaptiveAvgPool", "dtype", dtype)
    grad = checks.grad_mode("AdaptiveAvgPool", grad)
    return _adaptive_layer(
        "AdaptiveAvgPool", output_size, dtype, lambda config, x: apply_adaptive_avg_pool(config, x, grad)
    )


def AdaptiveMaxPool(
    output_size: int | Sequence[int | None], *, dtype: jnp.dtype | None = None, grad: str | None = None
) -> Layer:
    """Max pooling to a given spatial size: ``(N, *spatial, C) -> (N, *output_size, C)``.

    Windows as [`AdaptiveAvgPool`][funcnn.layers.adaptive_pool.AdaptiveAvgPool] (PyTorch's
    ``AdaptiveMaxPool{1,2,3}d``).
    The backward pass sends each output's gradient to the first maximum of
    its window in scan (row-major) order, as ``MaxPool`` and PyTorch do; a
    window holding a NaN sends it to its first NaN (PyTorch: its last).

    Args:
      output_size: one size for every spatial axis, or one entry per spatial
        axis (1 to 3), ``None`` keeping that axis' size.
      dtype: computation dtype; ``None`` keeps a floating input's dtype and
        pools integers in the default float.
      grad: ``"custom"`` (hand-written rules, forward and reverse mode), ``"custom_vjp"`` (reverse mode
        only) or ``"autodiff"``; ``None`` takes the mode in force ([`grad_mode`][funcnn.core.grad_mode]).

    Shapes:
      Input ``(N, *spatial, C)``, channels last, 1 to 3 spatial axes (as many as ``output_size`` has entries
        when it is a sequence).
      Output ``(N, *output_size, C)``, an int ``output_size`` on every spatial axis and a ``None`` entry
        keeping the input's size; outputs may be fewer or more than the inputs.

    Returns:
      The layer, an ``(init, apply)`` pair with no parameters and no state (``init`` gives ``()`` for both).

    Raises:
      LayerConfigError: at construction, when ``output_size`` is not a positive int or 1 to 3 entries each a
        positive int or ``None``, ``dtype`` is not a floating dtype JAX holds or ``grad`` is not one of its
        values. At ``init`` and when ``apply`` is traced, when the input's rank is not 3 to 5 or a sequence
        ``output_size`` does not have one entry per spatial axis. When ``apply`` is traced, when ``params`` is
        not empty, or ``x`` is not a real array or has an empty spatial axis.
    """
    output_size = adaptive_args("AdaptiveMaxPool", output_size)
    dtype = checks.dtype_or_none("AdaptiveMaxPool", "dtype", dtype)
    grad = checks.grad_mode("AdaptiveMaxPool", grad)
    return _adaptive_layer(
        "AdaptiveMaxPool", output_size, dtype, lambda config, x: apply_adaptive_max_pool(config, x, grad)
    )
