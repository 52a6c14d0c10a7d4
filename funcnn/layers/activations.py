"""Activation layers: elementwise functions and (log-)softmax, no parameters.

Each wraps an op of :mod:`funcnn.ops.activations`, which owns the hand-written VJP.
"""

from __future__ import annotations

from collections.abc import Callable

import jax

from funcnn import ops
from funcnn.core import Layer
from funcnn.ops._grad import check_grad


def _activation(name: str, grad: str, fn: Callable[[jax.Array], jax.Array]) -> Layer:
    """A shape-preserving, parameter-free layer applying ``fn``."""
    check_grad(name, grad)

    def init(key, input_shape):
        return tuple(input_shape), (), ()

    def apply(params, state, x, *, key=None, train=False):
        return fn(x), state

    init.__qualname__ = f"{name}.<locals>.init"
    return Layer(init, apply)


def Relu(*, grad: str = "custom") -> Layer:
    """``max(x, 0)``."""
    return _activation("Relu", grad, lambda x: ops.relu(x, grad=grad))


def Sigmoid(*, grad: str = "custom") -> Layer:
    """``1 / (1 + e^-x)``."""
    return _activation("Sigmoid", grad, lambda x: ops.sigmoid(x, grad=grad))


def Tanh(*, grad: str = "custom") -> Layer:
    """``tanh(x)``."""
    return _activation("Tanh", grad, lambda x: ops.tanh(x, grad=grad))


def LeakyRelu(negative_slope: float = 0.01, *, grad: str = "custom") -> Layer:
    """``x`` if ``x > 0`` else ``negative_slope * x``."""
    return _activation("LeakyRelu", grad, lambda x: ops.leaky_relu(x, negative_slope, grad=grad))


def Elu(alpha: float = 1.0, *, grad: str = "custom") -> Layer:
    """``x`` if ``x > 0`` else ``alpha (e^x - 1)``."""
    return _activation("Elu", grad, lambda x: ops.elu(x, alpha, grad=grad))


def Gelu(approximate: bool = True, *, grad: str = "custom") -> Layer:
    """``x Phi(x)``, by default with the tanh approximation (as ``jax.nn.gelu``)."""
    return _activation("Gelu", grad, lambda x: ops.gelu(x, approximate, grad=grad))


def Softmax(axis: int = -1, *, grad: str = "custom") -> Layer:
    """``e^x / sum(e^x)`` along ``axis``: class probabilities from logits."""
    return _activation("Softmax", grad, lambda x: ops.softmax(x, axis, grad=grad))


def LogSoftmax(axis: int = -1, *, grad: str = "custom") -> Layer:
    """``x - log sum(e^x)`` along ``axis``."""
    return _activation("LogSoftmax", grad, lambda x: ops.log_softmax(x, axis, grad=grad))
