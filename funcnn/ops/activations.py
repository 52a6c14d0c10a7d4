"""Elementwise activations and softmax, each with a hand-written VJP.

For ``y = f(x)`` applied elementwise, the VJP is ``dL/dx = dL/dy * f'(x)``;
each rule below writes ``f'`` in terms of what the forward pass saved:

* ReLU: ``f'(x) = [x > 0]`` (0 at ``x = 0``, as ``jax.nn.relu``).
* sigmoid: ``f' = sigma (1 - sigma)``.
* tanh: ``f' = 1 - tanh^2``.
* leaky ReLU: ``f'(x) = 1`` if ``x > 0`` else ``alpha``.
* ELU: ``f'(x) = 1`` if ``x > 0`` else ``alpha e^x = y + alpha``.
* GELU (exact): ``f = x Phi(x)``, ``f' = Phi(x) + x phi(x)``; (tanh approximation)
  ``f = x (1 + t) / 2`` with ``t = tanh(u)``, ``u = c (x + 0.044715 x^3)``,
  ``c = sqrt(2 / pi)``: ``f' = (1 + t) / 2 + x (1 - t^2) c (1 + 3 * 0.044715 x^2) / 2``.
* softmax along an axis: ``dL/dx = y * (g - sum(g * y))``.
* log-softmax: ``dL/dx = g - softmax(x) * sum(g) = g - e^y sum(g)``.

Integer and bool inputs are promoted to the default float, complex inputs
refused (:func:`funcnn.checks.input_array`). Cotangents come back in the
primal's dtype. Every rule is written with ``jax.numpy`` / ``lax``
primitives, so it can itself be differentiated (``grad`` of ``grad``, ``hessian``).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax import lax

from funcnn import checks
from funcnn.ops._grad import select

# --- ReLU ---------------------------------------------------------------------


@jax.custom_vjp
def _relu_custom(x: jax.Array) -> jax.Array:
    return jax.nn.relu(x)


def _relu_fwd(x):
    return jax.nn.relu(x), x


def _relu_bwd(x, g):
    return (jnp.where(x > 0, g, jnp.zeros((), g.dtype)).astype(x.dtype),)


_relu_custom.defvjp(_relu_fwd, _relu_bwd)


def relu(x: jax.Array, *, grad: str = "custom") -> jax.Array:
    """``max(x, 0)``; VJP ``g * [x > 0]``."""
    checks.grad_mode("relu", grad)
    return select(grad, _relu_custom, jax.nn.relu)(checks.input_array("relu", x))


# --- sigmoid ------------------------------------------------------------------


@jax.custom_vjp
def _sigmoid_custom(x: jax.Array) -> jax.Array:
    return jax.nn.sigmoid(x)


def _sigmoid_fwd(x):
    y = jax.nn.sigmoid(x)
    return y, y


def _sigmoid_bwd(y, g):
    return ((g * y * (1 - y)).astype(y.dtype),)


_sigmoid_custom.defvjp(_sigmoid_fwd, _sigmoid_bwd)


def sigmoid(x: jax.Array, *, grad: str = "custom") -> jax.Array:
    """``1 / (1 + e^-x)``; VJP ``g * sigma (1 - sigma)``."""
    checks.grad_mode("sigmoid", grad)
    return select(grad, _sigmoid_custom, jax.nn.sigmoid)(checks.input_array("sigmoid", x))


# --- tanh ---------------------------------------------------------------------


@jax.custom_vjp
def _tanh_custom(x: jax.Array) -> jax.Array:
    return jnp.tanh(x)


def _tanh_fwd(x):
    y = jnp.tanh(x)
    return y, y


def _tanh_bwd(y, g):
    return ((g * (1 - y * y)).astype(y.dtype),)


_tanh_custom.defvjp(_tanh_fwd, _tanh_bwd)


def tanh(x: jax.Array, *, grad: str = "custom") -> jax.Array:
    """``tanh(x)``; VJP ``g * (1 - tanh^2 x)``."""
    checks.grad_mode("tanh", grad)
    return select(grad, _tanh_custom, jnp.tanh)(checks.input_array("tanh", x))


# --- leaky ReLU ---------------------------------------------------------------


def _leaky_relu_forward(negative_slope: float, x: jax.Array) -> jax.Array:
    return jnp.where(x > 0, x, negative_slope * x)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _leaky_relu_custom(negative_slope: float, x: jax.Array) -> jax.Array:
    return _leaky_relu_forward(negative_slope, x)


def _leaky_relu_fwd(negative_slope, x):
    return _leaky_relu_forward(negative_slope, x), x


def _leaky_relu_bwd(negative_slope, x, g):
    return (jnp.where(x > 0, g, negative_slope * g).astype(x.dtype),)


_leaky_relu_custom.defvjp(_leaky_relu_fwd, _leaky_relu_bwd)


def leaky_relu(x: jax.Array, negative_slope: float = 0.01, *, grad: str = "custom") -> jax.Array:
    """``x`` if ``x > 0`` else ``negative_slope * x``; VJP ``g`` or ``negative_slope * g``."""
    checks.grad_mode("leaky_relu", grad)
    slope = checks.real("leaky_relu", "negative_slope", negative_slope)
    fn = select(grad, _leaky_relu_custom, _leaky_relu_forward)
    return fn(slope, checks.input_array("leaky_relu", x))


# --- ELU ----------------------------------------------------------------------


def _elu_forward(alpha: float, x: jax.Array) -> jax.Array:
    safe = jnp.where(x > 0, jnp.zeros((), x.dtype), x)
    return jnp.where(x > 0, x, alpha * jnp.expm1(safe))


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _elu_custom(alpha: float, x: jax.Array) -> jax.Array:
    return _elu_forward(alpha, x)


def _elu_fwd(alpha, x):
    y = _elu_forward(alpha, x)
    return y, (x, y)


def _elu_bwd(alpha, saved, g):
    x, y = saved
    return (jnp.where(x > 0, g, g * (y + alpha)).astype(x.dtype),)


_elu_custom.defvjp(_elu_fwd, _elu_bwd)


def elu(x: jax.Array, alpha: float = 1.0, *, grad: str = "custom") -> jax.Array:
    """``x`` if ``x > 0`` else ``alpha (e^x - 1)``; VJP ``g`` or ``g (y + alpha)``."""
    checks.grad_mode("elu", grad)
    alpha = checks.real("elu", "alpha", alpha)
    return select(grad, _elu_custom, _elu_forward)(alpha, checks.input_array("elu", x))


# --- GELU ---------------------------------------------------------------------

_GELU_C = math.sqrt(2.0 / math.pi)
_GELU_A = 0.044715


def _gelu_forward(approximate: bool, x: jax.Array) -> jax.Array:
    return jax.nn.gelu(x, approximate=approximate)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _gelu_custom(approximate: bool, x: jax.Array) -> jax.Array:
    return _gelu_forward(approximate, x)


def _gelu_fwd(approximate, x):
    return _gelu_forward(approximate, x), x


def _gelu_bwd(approximate, x, g):
    if approximate:
        t = jnp.tanh(_GELU_C * (x + _GELU_A * x**3))
        slope = 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * _GELU_C * (1 + 3 * _GELU_A * x * x)
    else:
        cdf = 0.5 * (1 + lax.erf(x / jnp.sqrt(jnp.asarray(2.0, x.dtype))))
        pdf = jnp.exp(-0.5 * x * x) / jnp.sqrt(jnp.asarray(2 * math.pi, x.dtype))
        slope = cdf + x * pdf
    return ((g * slope).astype(x.dtype),)


_gelu_custom.defvjp(_gelu_fwd, _gelu_bwd)


def gelu(x: jax.Array, approximate: bool = True, *, grad: str = "custom") -> jax.Array:
    """``x Phi(x)`` (or its tanh approximation, as ``jax.nn.gelu``); VJP ``g f'(x)``."""
    checks.grad_mode("gelu", grad)
    approximate = checks.boolean("gelu", "approximate", approximate)
    return select(grad, _gelu_custom, _gelu_forward)(approximate, checks.input_array("gelu", x))


# --- softmax and log-softmax ----------------------------------------------------


def _softmax_forward(axis: int, x: jax.Array) -> jax.Array:
    return jax.nn.softmax(x, axis=axis)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _softmax_custom(axis: int, x: jax.Array) -> jax.Array:
    return _softmax_forward(axis, x)


def _softmax_fwd(axis, x):
    y = _softmax_forward(axis, x)
    return y, y


def _softmax_bwd(axis, y, g):
    return ((y * (g - jnp.sum(g * y, axis=axis, keepdims=True))).astype(y.dtype),)


_softmax_custom.defvjp(_softmax_fwd, _softmax_bwd)


def softmax(x: jax.Array, axis: int = -1, *, grad: str = "custom") -> jax.Array:
    """``e^x / sum(e^x)`` along ``axis``; VJP ``y (g - sum(g y))``."""
    checks.grad_mode("softmax", grad)
    x = checks.input_array("softmax", x)
    axis = checks.axes("softmax", "axis", axis)
    checks.axis_in_range("softmax", "axis", axis, x.shape)
    return select(grad, _softmax_custom, _softmax_forward)(axis, x)


def _log_softmax_forward(axis: int, x: jax.Array) -> jax.Array:
    return jax.nn.log_softmax(x, axis=axis)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _log_softmax_custom(axis: int, x: jax.Array) -> jax.Array:
    return _log_softmax_forward(axis, x)


def _log_softmax_fwd(axis, x):
    y = _log_softmax_forward(axis, x)
    return y, y


def _log_softmax_bwd(axis, y, g):
    return ((g - jnp.exp(y) * jnp.sum(g, axis=axis, keepdims=True)).astype(y.dtype),)


_log_softmax_custom.defvjp(_log_softmax_fwd, _log_softmax_bwd)


def log_softmax(x: jax.Array, axis: int = -1, *, grad: str = "custom") -> jax.Array:
    """``x - log sum(e^x)`` along ``axis``; VJP ``g - softmax(x) sum(g)``."""
    checks.grad_mode("log_softmax", grad)
    x = checks.input_array("log_softmax", x)
    axis = checks.axes("log_softmax", "axis", axis)
    checks.axis_in_range("log_softmax", "axis", axis, x.shape)
    return select(grad, _log_softmax_custom, _log_softmax_forward)(axis, x)
