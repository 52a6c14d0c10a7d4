"""Pooling layers: ``MaxPool``, ``AvgPool``, ``GlobalMaxPool``, ``GlobalAvgPool``.

Output length per axis ``floor((n + lo + hi - f) / s) + 1``
(:func:`funcnn.shapes.pool_output_size`); strides default to the window.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp

from funcnn.core import Layer, Shape, check_rank
from funcnn.ops._grad import check_grad
from funcnn.ops.pool import avg_pool, max_pool, pool_config
from funcnn.shapes import Padding, pool_output_size


def _pool_output_shape(layer: str, input_shape: Shape, window, strides, padding) -> Shape:
    config = pool_config(layer, input_shape, window, strides, padding)
    out = tuple(
        pool_output_size(n, f, s, p)
        for n, f, s, p in zip(
            input_shape[1:-1], config.window[1:-1], config.strides[1:-1], config.padding[1:-1]
        )
    )
    return (input_shape[0], *out, input_shape[-1])


def MaxPool(
    window: int | Sequence[int],
    strides: int | Sequence[int] | None = None,
    padding: Padding = "VALID",
    *,
    grad: str = "custom",
) -> Layer:
    """Max pooling over the spatial axes; ``strides`` defaults to ``window``.

    The backward pass sends each output's gradient to the first maximum of its
    window in scan order (row-major), as XLA's select-and-scatter does.
    """
    check_grad("MaxPool", grad)

    def init(key, input_shape):
        return _pool_output_shape("MaxPool", input_shape, window, strides, padding), (), ()

    def apply(params, state, x, *, key=None, train=False):
        pool_config("MaxPool", x.shape, window, strides, padding)
        return max_pool(x, window, strides, padding, grad=grad), state

    return Layer(init, apply)


def AvgPool(
    window: int | Sequence[int],
    strides: int | Sequence[int] | None = None,
    padding: Padding = "VALID",
    *,
    count_include_pad: bool = True,
    grad: str = "custom",
) -> Layer:
    """Average pooling over the spatial axes; ``strides`` defaults to ``window``.

    Args:
      count_include_pad: with padding, divide every window's sum by the full
        window size (padded zeros count, PyTorch's default) when ``True``, or by
        the number of real inputs in the window when ``False``. Without padding
        the two agree.
    """
    check_grad("AvgPool", grad)

    def init(key, input_shape):
        return _pool_output_shape("AvgPool", input_shape, window, strides, padding), (), ()

    def apply(params, state, x, *, key=None, train=False):
        pool_config("AvgPool", x.shape, window, strides, padding)
        y = avg_pool(x, window, strides, padding, count_include_pad=count_include_pad, grad=grad)
        return y, state

    return Layer(init, apply)


def _global(layer: str, grad: str, pool) -> Layer:
    check_grad(layer, grad)
    def init(key, input_shape):
        check_rank(layer, "x", input_shape, (3, 4, 5))
        return (input_shape[0], input_shape[-1]), (), ()

    def apply(params, state, x, *, key=None, train=False):
        check_rank(layer, "x", x.shape, (3, 4, 5))
        y = pool(x, x.shape[1:-1])
        return jnp.reshape(y, (x.shape[0], x.shape[-1])), state

    init.__qualname__ = f"{layer}.<locals>.init"
    return Layer(init, apply)


def GlobalMaxPool(*, grad: str = "custom") -> Layer:
    """Maximum over all spatial positions: ``(N, *spatial, C) -> (N, C)``.

    A max pool whose window is the whole image, so it shares its backward rule.
    """
    return _global("GlobalMaxPool", grad, lambda x, window: max_pool(x, window, grad=grad))


def GlobalAvgPool(*, grad: str = "custom") -> Layer:
    """Mean over all spatial positions: ``(N, *spatial, C) -> (N, C)``."""
    return _global("GlobalAvgPool", grad, lambda x, window: avg_pool(x, window, grad=grad))
