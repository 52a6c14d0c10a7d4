"""Activation layers: elementwise functions and (log-)softmax, no parameters.

Each wraps an op of :mod:`funcnn.ops.activations`, which owns the hand-written
VJP. Integer and bool inputs are promoted to the default float (or ``dtype``).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from funcnn import checks, ops
from funcnn.core import Layer
from funcnn.identity import make_layer


def _activation(
    name: str,
    dtype,
    grad: str,
    fn: Callable[[jax.Array, str], jax.Array],
    check_shape: Callable[[tuple[int, ...]], None] = lambda shape: None,
) -> Layer:
    """A shape-preserving, parameter-free layer applying ``fn(x, grad)``; ``check_shape``
    checks the input shape at ``init`` and at every ``apply`` trace."""
    dtype = checks.dtype_or_none(name, "dtype", dtype)
    grad = checks.grad_mode(name, grad)

    def init(key, input_shape):
        check_shape(input_shape)
        return tuple(input_shape), (), ()

    def apply(params, state, x, *, key=None, train=False):
        checks.no_params(name, params)
        x = checks.input_array(name, x, dtype)
        check_shape(x.shape)
        return fn(x, grad), state

    return make_layer(name, init, apply)


def Relu(*, dtype: jnp.dtype | None = None, grad: str = "custom") -> Layer:
    """``max(x, 0)``."""
    return _activation("Relu", dtype, grad, lambda x, grad: ops.relu(x, grad=grad))


def Sigmoid(*, dtype: jnp.dtype | None = None, grad: str = "custom") -> Layer:
    """``1 / (1 + e^-x)``."""
    return _activation("Sigmoid", dtype, grad, lambda x, grad: ops.sigmoid(x, grad=grad))


def Tanh(*, dtype: jnp.dtype | None = None, grad: str = "custom") -> Layer:
    """``tanh(x)``."""
    return _activation("Tanh", dtype, grad, lambda x, grad: ops.tanh(x, grad=grad))


def LeakyRelu(negative_slope: float = 0.01, *, dtype: jnp.dtype | None = None, grad: str = "custom") -> Layer:
    """``x`` if ``x > 0`` else ``negative_slope * x``."""
    slope = checks.real("LeakyRelu", "negative_slope", negative_slope)
    return _activation("LeakyRelu", dtype, grad, lambda x, grad: ops.leaky_relu(x, slope, grad=grad))


def Elu(alpha: float = 1.0, *, dtype: jnp.dtype | None = None, grad: str = "custom") -> Layer:
    """``x`` if ``x > 0`` else ``alpha (e^x - 1)``."""
    alpha = checks.real("Elu", "alpha", alpha)
    return _activation("Elu", dtype, grad, lambda x, grad: ops.elu(x, alpha, grad=grad))


def Gelu(approximate: bool = True, *, dtype: jnp.dtype | None = None, grad: str = "custom") -> Layer:
    """``x Phi(x)``, by default with the tanh approximation (as ``jax.nn.gelu``)."""
    approximate = checks.boolean("Gelu", "approximate", approximate)
    return _activation("Gelu", dtype, grad, lambda x, grad: ops.gelu(x, approximate, grad=grad))


def _along_axis(name: str, axis: int, dtype, grad: str, op: Callable[..., jax.Array]) -> Layer:
    axis = checks.axes(name, "axis", axis)

    def check_shape(shape: tuple[int, ...]) -> None:
        checks.axis_in_range(name, "axis", axis, shape)

    return _activation(name, dtype, grad, lambda x, grad: op(x, axis, grad=grad), check_shape)


def Softmax(axis: int = -1, *, dtype: jnp.dtype | None = None, grad: str = "custom") -> Layer:
    """``e^x / sum(e^x)`` along ``axis``: class probabilities from logits."""
    return _along_axis("Softmax", axis, dtype, grad, ops.softmax)


def LogSoftmax(axis: int = -1, *, dtype: jnp.dtype | None = None, grad: str = "custom") -> Layer:
    """``x - log sum(e^x)`` along ``axis``."""
    return _along_axis("LogSoftmax", axis, dtype, grad, ops.log_softmax)
