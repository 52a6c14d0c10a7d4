"""Elementwise activations, PReLU and softmax, each with a hand-written VJP and JVP.

For ``y = f(x)`` applied elementwise, the VJP is ``dL/dx = dL/dy * f'(x)``
and the JVP ``dy = f'(x) dx``, the same product (the Jacobian is diagonal).
One helper, ``_elementwise``, turns a forward function and a one-line
derivative into both rules and the op; each derivative is
written in terms of what the forward pass saves (``x`` or ``y``):

* ReLU ``max(x, 0)``: ``f' = [x > 0]`` (0 at ``x = 0``, as ``jax.nn.relu`` and PyTorch).
* ReLU6 ``min(max(x, 0), 6)``: ``f' = [0 < x < 6]`` (0 at both kinks, as
  ``jax.nn.relu6`` and PyTorch).
* sigmoid ``1 / (1 + e^-x)``: ``f' = y (1 - y)``.
* tanh: ``f' = 1 - y^2``.
* leaky ReLU: ``f' = 1`` if ``x > 0`` else ``negative_slope`` (the slope at 0, as PyTorch).
* ELU: ``f' = 1`` if ``x > 0`` else ``alpha e^x = y + alpha``.
* SELU ``lambda elu(x, alpha)`` with PyTorch's and ``jax.nn.selu``'s constants:
  ``f' = lambda`` if ``y > 0`` else ``lambda alpha e^x = y + lambda alpha``
  (``y > 0`` exactly where ``x > 0``).
* CELU ``x`` if ``x > 0`` else ``alpha (e^(x / alpha) - 1)``: ``f' = 1`` if ``y > 0``
  else ``e^(x / alpha) = y / alpha + 1`` (for any ``alpha != 0``, ``y > 0`` exactly where ``x > 0``).
* GELU (exact): ``f = x Phi(x)``, ``f' = Phi(x) + x phi(x)``; (tanh approximation)
  ``f = x (1 + t) / 2`` with ``t = tanh(u)``, ``u = c (x + 0.044715 x^3)``,
  ``c = sqrt(2 / pi)``: ``f' = (1 + t) / 2 + x (1 - t^2) c (1 + 3 * 0.044715 x^2) / 2``.
* SiLU ``x sigma(x)``: ``f' = sigma(x) (1 + x (1 - sigma(x)))``.
* softplus ``log(1 + e^(beta x)) / beta``, and ``x`` where ``beta x > threshold``
  (PyTorch's switch to the identity): ``f' = sigma(beta x)``, and 1 above the threshold.
* log-sigmoid ``log sigma(x) = -softplus(-x)``: ``f' = sigma(-x)``.
* softsign ``x / (1 + |x|)``: ``f' = 1 / (1 + |x|)^2``.
* hard sigmoid ``relu6(x + 3) / 6``: ``f' = [-3 < x < 3] / 6``.
* hard SiLU ``x relu6(x + 3) / 6`` (PyTorch's hardswish): ``f' = 0`` for ``x <= -3``,
  ``x / 3 + 1/2`` for ``-3 < x < 3``, ``1`` for ``x >= 3``.

ELU, SELU and CELU read ``y``, which saves an exponential in the backward
pass; where ``e^x`` is below the float's resolution (``x`` below about -36 in
float64, -16 in float32) ``y + alpha`` rounds to 0 or one ulp of ``alpha``
instead of ``alpha e^x``, an absolute error below ``alpha eps``, as in
``jax.nn``'s autodiff of ``expm1`` (PyTorch computes ``alpha e^x``).

Where ``f'`` is zero on a whole region (ReLU, ReLU6, the hard functions) the
rule *selects* the cotangent rather than multiplying it, as ``jax.nn.relu``'s
rule and PyTorch's do: an infinite cotangent at a dead unit gives 0, not nan.

Not elementwise, with rules of their own:

* PReLU ``x`` if ``x > 0`` else ``a x``, ``a`` learned (one slope, or one per channel):
  ``dL/dx = g`` if ``x > 0`` else ``a g``; ``dL/da = sum(g x [x <= 0])`` over the
  axes ``a`` is broadcast along.
* softmax along an axis: ``dL/dx = y * (g - sum(g * y))``.
* log-softmax: ``dL/dx = g - softmax(x) * sum(g) = g - e^y sum(g)``.

Integer and bool inputs are promoted to the default float, complex inputs
refused ([`funcnn.checks.input_array`][funcnn.checks.input_array]). Cotangents come back in the
primal's dtype. Every rule is written with ``jax.numpy`` / ``lax``
primitives, so it can itself be differentiated (``grad`` of ``grad``, ``hessian``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from funcnn import checks
from funcnn.core import LayerConfigError
from funcnn.ops._grad import cotangents_like
from funcnn.ops._rules import HandWritten

Derivative = Callable[..., Any]
"""``derivative(x, y, *hyper)`` -> ``f'`` as an array, or a pair ``(where, f')`` meaning
``f'`` where ``where`` holds and exactly 0 elsewhere; the operand not saved is ``None``."""


def _elementwise(
    name: str, forward: Callable[..., jax.Array], derivative: Derivative, saves: str
) -> Callable[..., jax.Array]:
    """The op ``apply(x, grad, *hyper)`` for ``y = forward(x, *hyper)`` with the VJP
    ``dL/dx = g * derivative(x, y, *hyper)``, cast to the primal's dtype.

    Args:
      name: the op's name, for error messages.
      forward: ``forward(x, *hyper)``, also the ``grad="autodiff"`` path.
      derivative: ``f'`` in terms of what the forward pass saves (see ``Derivative``).
      saves: ``"x"``, ``"y"`` or ``"xy"``: the residuals ``derivative`` reads.
    """

    def primal(hyper: tuple, x: jax.Array) -> jax.Array:
        return forward(x, *hyper)

    def custom_fwd(hyper, x):
        y = forward(x, *hyper)
        return y, (x if "x" in saves else None, y if "y" in saves else None)

    def custom_bwd(hyper, saved, g):
        x, y = saved
        dtype = (x if x is not None else y).dtype
        fprime = derivative(x, y, *hyper)
        if isinstance(fprime, tuple):
            where, fprime = fprime
            return (jnp.where(where, g * fprime, jnp.zeros((), g.dtype)).astype(dtype),)
        return ((g * fprime).astype(dtype),)

    def custom_jvp(hyper, saved, tangents):
        # The Jacobian is diagonal, f'(x), so symmetric: the JVP dy = f'(x) dx is the VJP's product.
        return custom_bwd(hyper, saved, tangents[0])[0]

    rules = HandWritten(name, primal, custom_fwd, custom_bwd, custom_jvp)

    def apply(x: Any, grad: str, *hyper: Any) -> jax.Array:
        checks.grad_mode(name, grad)
        return rules.select(grad)(hyper, checks.input_array(name, x))

    return apply


# --- ReLU and ReLU6 ------------------------------------------------------------

_relu = _elementwise("relu", jax.nn.relu, lambda x, y: (x > 0, 1.0), "x")


def relu(x: jax.Array, *, grad: str | None = None) -> jax.Array:
    """``max(x, 0)``; VJP ``g * [x > 0]``.

    Args:
      x: an array of any shape, or a Python or NumPy number; integer and bool inputs are promoted
        to the default float.
      grad: ``"custom"`` (hand-written VJP and JVP), ``"custom_vjp"`` or ``"autodiff"``; ``None``
        takes the mode in force ([`funcnn.grad_mode`][funcnn.core.grad_mode], ``"custom"`` outside it).

    Returns:
      The activation, elementwise: an array of ``x``'s shape, in ``x``'s dtype (the default float
        for an integer or bool ``x``).

    Raises:
      LayerConfigError: when the op is called (at trace time under ``jit``) if ``x`` is not an array or
        a number (a list, a tuple or a Python bool is refused) or has a complex or non-numeric dtype, or
        ``grad`` is not ``None``, ``"custom"``, ``"custom_vjp"`` or ``"autodiff"``.
    """
    return _relu(x, grad)


_relu6 = _elementwise("relu6", jax.nn.relu6, lambda x, y: ((x > 0) & (x < 6), 1.0), "x")


def relu6(x: jax.Array, *, grad: str | None = None) -> jax.Array:
    """``min(max(x, 0), 6)``; VJP ``g * [0 < x < 6]``.

    The derivative is 0 at both kinks (``x = 0`` and ``x = 6``), as PyTorch's
    ``relu6`` and ``jax.nn.relu6`` (also the ``grad="autodiff"`` path) take it.

    Args:
      x: an array of any shape, or a Python or NumPy number; integer and bool inputs are promoted
        to the default float.
      grad: ``"custom"`` (hand-written VJP and JVP), ``"custom_vjp"`` or ``"autodiff"``; ``None``
        takes the mode in force ([`funcnn.grad_mode`][funcnn.core.grad_mode], ``"custom"`` outside it).

    Returns:
      The activation, elementwise: an array of ``x``'s shape, in ``x``'s dtype (the default float
        for an integer or bool ``x``).

    Raises:
      LayerConfigError: when the op is called (at trace time under ``jit``) if ``x`` is not an array or
        a number (a list, a tuple or a Python bool is refused) or has a complex or non-numeric dtype, or
        ``grad`` is not ``None``, ``"custom"``, ``"custom_vjp"`` or ``"autodiff"``.
    """
    return _relu6(x, grad)


# --- sigmoid, tanh, log-sigmoid --------------------------------------------------

_sigmoid = _elementwise("sigmoid", jax.nn.sigmoid, lambda x, y: y * (1 - y), "y")


def sigmoid(x: jax.Array, *, grad: str | None = None) -> jax.Array:
    """``1 / (1 + e^-x)``; VJP ``g * sigma (1 - sigma)``.

    Args:
      x: an array of any shape, or a Python or NumPy number; integer and bool inputs are promoted
        to the default float.
      grad: ``"custom"`` (hand-written VJP and JVP), ``"custom_vjp"`` or ``"autodiff"``; ``None``
        takes the mode in force ([`funcnn.grad_mode`][funcnn.core.grad_mode], ``"custom"`` outside it).

    Returns:
      The activation, elementwise: an array of ``x``'s shape, in ``x``'s dtype (the default float
        for an integer or bool ``x``).

    Raises:
      LayerConfigError: when the op is called (at trace time under ``jit``) if ``x`` is not an array or
        a number (a list, a tuple or a Python bool is refused) or has a complex or non-numeric dtype, or
        ``grad`` is not ``None``, ``"custom"``, ``"custom_vjp"`` or ``"autodiff"``.
    """
    return _sigmoid(x, grad)


_tanh = _elementwise("tanh", jnp.tanh, lambda x, y: 1 - y * y, "y")


def tanh(x: jax.Array, *, grad: str | None = None) -> jax.Array:
    """``tanh(x)``; VJP ``g * (1 - tanh^2 x)``.

    Args:
      x: an array of any shape, or a Python or NumPy number; integer and bool inputs are promoted
        to the default float.
      grad: ``"custom"`` (hand-written VJP and JVP), ``"custom_vjp"`` or ``"autodiff"``; ``None``
        takes the mode in force ([`funcnn.grad_mode`][funcnn.core.grad_mode], ``"custom"`` outside it).

    Returns:
      The activation, elementwise: an array of ``x``'s shape, in ``x``'s dtype (the default float
        for an integer or bool ``x``).

    Raises:
      LayerConfigError: when the op is called (at trace time under ``jit``) if ``x`` is not an array or
        a number (a list, a tuple or a Python bool is refused) or has a complex or non-numeric dtype, or
        ``grad`` is not ``None``, ``"custom"``, ``"custom_vjp"`` or ``"autodiff"``.
    """
    return _tanh(x, grad)


_log_sigmoid = _elementwise("log_sigmoid", jax.nn.log_sigmoid, lambda x, y: jax.nn.sigmoid(-x), "x")


def log_sigmoid(x: jax.Array, *, grad: str | None = None) -> jax.Array:
    """``log sigma(x) = -log(1 + e^-x)``, computed stably; VJP ``g * sigma(-x)``.

    Equals PyTorch's ``logsigmoid`` and ``jax.nn.log_sigmoid``.

    Args:
      x: an array of any shape, or a Python or NumPy number; integer and bool inputs are promoted
        to the default float.
      grad: ``"custom"`` (hand-written VJP and JVP), ``"custom_vjp"`` or ``"autodiff"``; ``None``
        takes the mode in force ([`funcnn.grad_mode`][funcnn.core.grad_mode], ``"custom"`` outside it).

    Returns:
      The activation, elementwise: an array of ``x``'s shape, in ``x``'s dtype (the default float
        for an integer or bool ``x``).

    Raises:
      LayerConfigError: when the op is called (at trace time under ``jit``) if ``x`` is not an array or
        a number (a list, a tuple or a Python bool is refused) or has a complex or non-numeric dtype, or
        ``grad`` is not ``None``, ``"custom"``, ``"custom_vjp"`` or ``"autodiff"``.
    """
    return _log_sigmoid(x, grad)


# --- leaky ReLU, ELU, SELU, CELU ---------------------------------------------------


def _leaky_relu_forward(x: jax.Array, negative_slope: float) -> jax.Array:
    return jnp.where(x > 0, x, negative_slope * x)


_leaky_relu = _elementwise(
    "leaky_relu", _leaky_relu_forward, lambda x, y, slope: jnp.where(x > 0, 1.0, slope), "x"
)


def leaky_relu(x: jax.Array, negative_slope: float = 0.01, *, grad: str | None = None) -> jax.Array:
    """``x`` if ``x > 0`` else ``negative_slope * x``; VJP ``g`` or ``negative_slope * g``.

    Args:
      x: an array of any shape, or a Python or NumPy number; integer and bool inputs are promoted
        to the default float.
      negative_slope: the slope for ``x <= 0`` (the derivative at 0 too), a finite real number;
        default 0.01, PyTorch's.
      grad: ``"custom"`` (hand-written VJP and JVP), ``"custom_vjp"`` or ``"autodiff"``; ``None``
        takes the mode in force ([`funcnn.grad_mode`][funcnn.core.grad_mode], ``"custom"`` outside it).

    Returns:
      The activation, elementwise: an array of ``x``'s shape, in ``x``'s dtype (the default float
        for an integer or bool ``x``).

    Raises:
      LayerConfigError: when the op is called (at trace time under ``jit``) if ``x`` is not an array or
        a number (a list, a tuple or a Python bool is refused) or has a complex or non-numeric dtype,
        ``negative_slope`` is not a finite real number fixed at trace time (a bool or a traced value is
        refused), or ``grad`` is not ``None``, ``"custom"``, ``"custom_vjp"`` or ``"autodiff"``.
    """
    return _leaky_relu(x, grad, checks.real("leaky_relu", "negative_slope", negative_slope))


def _elu_forward(x: jax.Array, alpha: float) -> jax.Array:
    safe = jnp.where(x > 0, jnp.zeros((), x.dtype), x)  # no overflow (nor nan gradient) in the unused branch
    return jnp.where(x > 0, x, alpha * jnp.expm1(safe))


_elu = _elementwise("elu", _elu_forward, lambda x, y, alpha: jnp.where(x > 0, 1.0, y + alpha), "xy")


def elu(x: jax.Array, alpha: float = 1.0, *, grad: str | None = None) -> jax.Array:
    """``x`` if ``x > 0`` else ``alpha (e^x - 1)``; VJP ``g`` or ``g (y + alpha)``.

    Args:
      x: an array of any shape, or a Python or NumPy number; integer and bool inputs are promoted
        to the default float.
      alpha: the negative branch's scale (it tends to ``-alpha``), a finite real number.
      grad: ``"custom"`` (hand-written VJP and JVP), ``"custom_vjp"`` or ``"autodiff"``; ``None``
        takes the mode in force ([`funcnn.grad_mode`][funcnn.core.grad_mode], ``"custom"`` outside it).

    Returns:
      The activation, elementwise: an array of ``x``'s shape, in ``x``'s dtype (the default float
        for an integer or bool ``x``).

    Raises:
      LayerConfigError: when the op is called (at trace time under ``jit``) if ``x`` is not an array or
        a number (a list, a tuple or a Python bool is refused) or has a complex or non-numeric dtype,
        ``alpha`` is not a finite real number fixed at trace time (a bool or a traced value is refused),
        or ``grad`` is not ``None``, ``"custom"``, ``"custom_vjp"`` or ``"autodiff"``.
    """
    return _elu(x, grad, checks.real("elu", "alpha", alpha))


SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
"""SELU's constants (Klambauer et al. 2017), as ``jax.nn.selu`` and PyTorch's ``selu``."""


def _selu_forward(x: jax.Array) -> jax.Array:
    return SELU_SCALE * _elu_forward(x, SELU_ALPHA)


_selu = _elementwise(
    "selu", _selu_forward, lambda x, y: jnp.where(y > 0, SELU_SCALE, y + SELU_SCALE * SELU_ALPHA), "y"
)


def selu(x: jax.Array, *, grad: str | None = None) -> jax.Array:
    """``lambda x`` if ``x > 0`` else ``lambda alpha (e^x - 1)``, with ``alpha`` and ``lambda`` the
    constants ``SELU_ALPHA`` and ``SELU_SCALE``; VJP ``g lambda`` or ``g (y + lambda alpha)``.

    Equals ``jax.nn.selu`` and PyTorch's ``selu``; the derivative at 0 is the
    left one, ``lambda alpha``, as both take it.

    Args:
      x: an array of any shape, or a Python or NumPy number; integer and bool inputs are promoted
        to the default float.
      grad: ``"custom"`` (hand-written VJP and JVP), ``"custom_vjp"`` or ``"autodiff"``; ``None``
        takes the mode in force ([`funcnn.grad_mode`][funcnn.core.grad_mode], ``"custom"`` outside it).

    Returns:
      The activation, elementwise: an array of ``x``'s shape, in ``x``'s dtype (the default float
        for an integer or bool ``x``).

    Raises:
      LayerConfigError: when the op is called (at trace time under ``jit``) if ``x`` is not an array or
        a number (a list, a tuple or a Python bool is refused) or has a complex or non-numeric dtype, or
        ``grad`` is not ``None``, ``"custom"``, ``"custom_vjp"`` or ``"autodiff"``.
    """
    return _selu(x, grad)


def _celu_forward(x: jax.Array, alpha: float) -> jax.Array:
    safe = jnp.where(x > 0, jnp.zeros((), x.dtype), x)
    return jnp.where(x > 0, x, alpha * jnp.expm1(safe / alpha))


_celu = _elementwise("celu", _celu_forward, lambda x, y, alpha: jnp.where(y > 0, 1.0, y / alpha + 1), "y")


def celu_alpha(where: str, value: Any) -> float:
    """CELU's ``alpha``: a real number, not 0 (it divides ``x``), as PyTorch requires."""
    alpha = checks.real(where, "alpha", value)
    if alpha == 0:
        raise LayerConfigError(
            f"{where}: argument `alpha` must be nonzero (CELU divides x by it), got {value!r}"
        )
    return alpha


def celu(x: jax.Array, alpha: float = 1.0, *, grad: str | None = None) -> jax.Array:
    """``x`` if ``x > 0`` else ``alpha (e^(x / alpha) - 1)``; VJP ``g`` or ``g (y / alpha + 1)``.

    Equals ``jax.nn.celu`` and PyTorch's ``celu``; continuously
    differentiable, with ``f'(0) = 1``.

    Args:
      x: an array of any shape, or a Python or NumPy number; integer and bool inputs are promoted
        to the default float.
      alpha: the negative branch's scale, a nonzero real number.
      grad: ``"custom"`` (hand-written VJP and JVP), ``"custom_vjp"`` or ``"autodiff"``; ``None``
        takes the mode in force ([`funcnn.grad_mode`][funcnn.core.grad_mode], ``"custom"`` outside it).

    Returns:
      The activation, elementwise: an array of ``x``'s shape, in ``x``'s dtype (the default float
        for an integer or bool ``x``).

    Raises:
      LayerConfigError: when the op is called (at trace time under ``jit``) if ``x`` is not an array or
        a number (a list, a tuple or a Python bool is refused) or has a complex or non-numeric dtype,
        ``alpha`` is not a finite, nonzero real number fixed at trace time (a bool or a traced value is
        refused), or ``grad`` is not ``None``, ``"custom"``, ``"custom_vjp"`` or ``"autodiff"``.
    """
    return _celu(x, grad, celu_alpha("celu", alpha))


# --- GELU, SiLU ---------------------------------------------------------------------

_GELU_C = math.sqrt(2.0 / math.pi)
_GELU_A = 0.044715


def _gelu_derivative(x: jax.Array, y: None, approximate: bool) -> jax.Array:
    if approximate:
        t = jnp.tanh(_GELU_C * (x + _GELU_A * x**3))
        return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * _GELU_C * (1 + 3 * _GELU_A * x * x)
    cdf = 0.5 * (1 + lax.erf(x / jnp.sqrt(jnp.asarray(2.0, x.dtype))))
    pdf = jnp.exp(-0.5 * x * x) / jnp.sqrt(jnp.asarray(2 * math.pi, x.dtype))
    return cdf + x * pdf


_gelu = _elementwise(
    "gelu", lambda x, approximate: jax.nn.gelu(x, approximate=approximate), _gelu_derivative, "x"
)


def gelu(x: jax.Array, approximate: bool = True, *, grad: str | None = None) -> jax.Array:
    """``x Phi(x)`` (or its tanh approximation, as ``jax.nn.gelu``); VJP ``g f'(x)``.

    Args:
      x: an array of any shape, or a Python or NumPy number; integer and bool inputs are promoted
        to the default float.
      approximate: ``True`` (the default, as ``jax.nn.gelu``) for the tanh approximation
        ``x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))) / 2``, ``False`` for the exact ``x Phi(x)``,
        ``Phi`` the standard normal CDF (PyTorch's default). A Python or NumPy bool.
      grad: ``"custom"`` (hand-written VJP and JVP), ``"custom_vjp"`` or ``"autodiff"``; ``None``
        takes the mode in force ([`funcnn.grad_mode`][funcnn.core.grad_mode], ``"custom"`` outside it).

    Returns:
      The activation, elementwise: an array of ``x``'s shape, in ``x``'s dtype (the default float
        for an integer or bool ``x``).

    Raises:
      LayerConfigError: when the op is called (at trace time under ``jit``) if ``x`` is not an array or
        a number (a list, a tuple or a Python bool is refused) or has a complex or non-numeric dtype,
        ``approximate`` is not a Python or NumPy bool (a traced one, under ``jit``, is refused: make it
        static), or ``grad`` is not ``None``, ``"custom"``, ``"custom_vjp"`` or ``"autodiff"``.
    """
    return _gelu(x, grad, checks.boolean("gelu", "approximate", approximate))


def _silu_derivative(x: jax.Array, y: None) -> jax.Array:
    s = jax.nn.sigmoid(x)
    return s * (1 + x * (1 - s))


_silu = _elementwise("silu", jax.nn.silu, _silu_derivative, "x")


def silu(x: jax.Array, *, grad: str | None = None) -> jax.Array:
    """``x sigma(x)`` (swish); VJP ``g sigma(x) (1 + x (1 - sigma(x)))``.

    Equals ``jax.nn.silu`` and PyTorch's ``silu``.

    Args:
      x: an array of any shape, or a Python or NumPy number; integer and bool inputs are promoted
        to the default float.
      grad: ``"custom"`` (hand-written VJP and JVP), ``"custom_vjp"`` or ``"autodiff"``; ``None``
        takes the mode in force ([`funcnn.grad_mode`][funcnn.core.grad_mode], ``"custom"`` outside it).

    Returns:
      The activation, elementwise: an array of ``x``'s shape, in ``x``'s dtype (the default float
        for an integer or bool ``x``).

    Raises:
      LayerConfigError: when the op is called (at trace time under ``jit``) if ``x`` is not an array or
        a number (a list, a tuple or a Python bool is refused) or has a complex or non-numeric dtype, or
        ``grad`` is not ``None``, ``"custom"``, ``"custom_vjp"`` or ``"autodiff"``.
    """
    return _silu(x, grad)


# --- softplus, softsign -------------------------------------------------------------


def _softplus_forward(x: jax.Array, beta: float, threshold: float) -> jax.Array:
    return jnp.where(beta * x > threshold, x, jnp.logaddexp(beta * x, 0) / beta)


_softplus = _elementwise(
    "softplus",
    _softplus_forward,
    lambda x, y, beta, threshold: jnp.where(beta * x > threshold, 1.0, jax.nn.sigmoid(beta * x)),
    "x",
)


def softplus(
    x: jax.Array, beta: float = 1.0, threshold: float = 20.0, *, grad: str | None = None
) -> jax.Array:
    """``log(1 + e^(beta x)) / beta``, and ``x`` where ``beta x > threshold``; VJP
    ``g sigma(beta x)``, and ``g`` above the threshold.

    As PyTorch's ``softplus(x, beta, threshold)``: above the threshold the
    function is the identity, which it equals to ``log1p(e^-threshold) / beta``
    (2e-9 for the default 20, below float32's resolution at that size).
    ``jax.nn.softplus`` has no threshold: pass a large one (``1e30``) to get it.
    The log is computed stably (``logaddexp``) for any threshold.

    Args:
      x: an array of any shape, or a Python or NumPy number; integer and bool inputs are promoted
        to the default float.
      beta: the sharpness, a finite real number ``> 0`` (default 1).
      threshold: the value of ``beta x`` above which the function is ``x``, a finite real number
        (default 20).
      grad: ``"custom"`` (hand-written VJP and JVP), ``"custom_vjp"`` or ``"autodiff"``; ``None``
        takes the mode in force ([`funcnn.grad_mode`][funcnn.core.grad_mode], ``"custom"`` outside it).

    Returns:
      The activation, elementwise: an array of ``x``'s shape, in ``x``'s dtype (the default float
        for an integer or bool ``x``).

    Raises:
      LayerConfigError: when the op is called (at trace time under ``jit``) if ``x`` is not an array or
        a number (a list, a tuple or a Python bool is refused) or has a complex or non-numeric dtype,
        ``beta`` is not a finite real number ``> 0`` or ``threshold`` not a finite real number, each
        fixed at trace time (a bool or a traced value is refused), or ``grad`` is not ``None``,
        ``"custom"``, ``"custom_vjp"`` or ``"autodiff"``.
    """
    beta = checks.real("softplus", "beta", beta, low=0.0, low_open=True)
    return _softplus(x, grad, beta, checks.real("softplus", "threshold", threshold))


def _softsign_forward(x: jax.Array) -> jax.Array:
    return x / (1 + jnp.abs(x))


_softsign = _elementwise("softsign", _softsign_forward, lambda x, y: 1 / jnp.square(1 + jnp.abs(x)), "x")


def softsign(x: jax.Array, *, grad: str | None = None) -> jax.Array:
    """``x / (1 + |x|)``; VJP ``g / (1 + |x|)^2``.

    Equals ``jax.nn.soft_sign`` and PyTorch's ``softsign``.

    Args:
      x: an array of any shape, or a Python or NumPy number; integer and bool inputs are promoted
        to the default float.
      grad: ``"custom"`` (hand-written VJP and JVP), ``"custom_vjp"`` or ``"autodiff"``; ``None``
        takes the mode in force ([`funcnn.grad_mode`][funcnn.core.grad_mode], ``"custom"`` outside it).

    Returns:
      The activation, elementwise: an array of ``x``'s shape, in ``x``'s dtype (the default float
        for an integer or bool ``x``).

    Raises:
      LayerConfigError: when the op is called (at trace time under ``jit``) if ``x`` is not an array or
        a number (a list, a tuple or a Python bool is refused) or has a complex or non-numeric dtype, or
        ``grad`` is not ``None``, ``"custom"``, ``"custom_vjp"`` or ``"autodiff"``.
    """
    return _softsign(x, grad)


# --- hard sigmoid, hard SiLU -------------------------------------------------------

_hard_sigmoid = _elementwise(
    "hard_sigmoid", jax.nn.hard_sigmoid, lambda x, y: ((x > -3) & (x < 3), 1 / 6), "x"
)


def hard_sigmoid(x: jax.Array, *, grad: str | None = None) -> jax.Array:
    """``relu6(x + 3) / 6``: 0 below -3, 1 above 3, ``x / 6 + 1/2`` between; VJP ``g [-3 < x < 3] / 6``.

    The same function as PyTorch's ``hardsigmoid``, ``jax.nn.hard_sigmoid``
    and Keras 3's ``hard_sigmoid`` (Keras 2's was ``0.2 x + 0.5`` on
    ``[-2.5, 2.5]``); the derivative is 0 at both kinks, as PyTorch's and
    ``jax.nn``'s.

    Args:
      x: an array of any shape, or a Python or NumPy number; integer and bool inputs are promoted
        to the default float.
      grad: ``"custom"`` (hand-written VJP and JVP), ``"custom_vjp"`` or ``"autodiff"``; ``None``
        takes the mode in force ([`funcnn.grad_mode`][funcnn.core.grad_mode], ``"custom"`` outside it).

    Returns:
      The activation, elementwise: an array of ``x``'s shape, in ``x``'s dtype (the default float
        for an integer or bool ``x``).

    Raises:
      LayerConfigError: when the op is called (at trace time under ``jit``) if ``x`` is not an array or
        a number (a list, a tuple or a Python bool is refused) or has a complex or non-numeric dtype, or
        ``grad`` is not ``None``, ``"custom"``, ``"custom_vjp"`` or ``"autodiff"``.
    """
    return _hard_sigmoid(x, grad)


def _hard_silu_derivative(x: jax.Array, y: None) -> tuple[jax.Array, jax.Array]:
    # The product rule, hard_sigmoid(x) + x hard_sigmoid'(x): as fast as autodiff on CPU, where one
    # select between x / 3 + 1/2 and 1 compiles to a slower loop.
    return x > -3, jnp.minimum(x * (1 / 6) + 0.5, 1.0) + jnp.where(x < 3, x * (1 / 6), 0.0)


_hard_silu = _elementwise("hard_silu", jax.nn.hard_silu, _hard_silu_derivative, "x")


def hard_silu(x: jax.Array, *, grad: str | None = None) -> jax.Array:
    """``x relu6(x + 3) / 6`` (hard swish); VJP ``g`` times 0 for ``x <= -3``, ``x / 3 + 1/2``
    for ``-3 < x < 3``, 1 for ``x >= 3``.

    Equals PyTorch's ``hardswish`` and ``jax.nn.hard_silu``, with their
    derivatives at the kinks: 0 at ``x = -3``, 1 at ``x = 3`` (the outer pieces').

    Args:
      x: an array of any shape, or a Python or NumPy number; integer and bool inputs are promoted
        to the default float.
      grad: ``"custom"`` (hand-written VJP and JVP), ``"custom_vjp"`` or ``"autodiff"``; ``None``
        takes the mode in force ([`funcnn.grad_mode`][funcnn.core.grad_mode], ``"custom"`` outside it).

    Returns:
      The activation, elementwise: an array of ``x``'s shape, in ``x``'s dtype (the default float
        for an integer or bool ``x``).

    Raises:
      LayerConfigError: when the op is called (at trace time under ``jit``) if ``x`` is not an array or
        a number (a list, a tuple or a Python bool is refused) or has a complex or non-numeric dtype, or
        ``grad`` is not ``None``, ``"custom"``, ``"custom_vjp"`` or ``"autodiff"``.
    """
    return _hard_silu(x, grad)


# --- PReLU ----------------------------------------------------------------------------


def _prelu_forward(x: jax.Array, slope: jax.Array) -> jax.Array:
    return jnp.where(x > 0, x, lax.broadcast_to_rank(slope, x.ndim) * x)


def _prelu_fwd(_, x, slope):
    return _prelu_forward(x, slope), (x, slope)


def _prelu_bwd(_, saved, g):
    x, slope = saved

    def rule(x, slope, g):
        positive = x > 0
        dx = jnp.where(positive, g, lax.broadcast_to_rank(slope, x.ndim) * g)
        axes = tuple(range(x.ndim - slope.ndim))  # the axes slope is broadcast along
        dslope = jnp.sum(jnp.where(positive, jnp.zeros((), g.dtype), g * x), axis=axes)
        return dx.astype(x.dtype), dslope.astype(slope.dtype)

    return cotangents_like(rule, (x, slope), x, slope, g)


def _prelu_jvp(_, saved, tangents):
    """``dy = dx`` where ``x > 0``, else ``slope dx + x dslope`` (a zero tangent's term left out)."""
    x, slope = saved
    dx, dslope = tangents
    negative = jnp.zeros_like(x)
    if dx is not None:
        negative = lax.broadcast_to_rank(slope, x.ndim) * dx
    if dslope is not None:
        negative = negative + x * lax.broadcast_to_rank(dslope, x.ndim)
    return jnp.where(x > 0, jnp.zeros_like(x) if dx is None else dx, negative)


PRELU_RULES = HandWritten(
    "prelu", lambda _, x, slope: _prelu_forward(x, slope), _prelu_fwd, _prelu_bwd, _prelu_jvp
)
"""PReLU's hand-written rules (no static configuration: the first argument is ``None``)."""


def prelu(x: jax.Array, slope: jax.Array, *, grad: str | None = None) -> jax.Array:
    """Parametric ReLU: ``x`` if ``x > 0`` else ``slope * x``, with a learned ``slope``.

    Backward (``g = dL/dy``)::

        dL/dx     = g                                   if x > 0, else slope * g
        dL/dslope = sum of g * x over the entries x <= 0, along the axes slope is broadcast
                    (all of them for one slope; all but the channels for one per channel)

    At ``x = 0`` the derivative in ``x`` is the slope's, as PyTorch's ``prelu``.
    Both operands are cast to one floating dtype (the wider of the two, as
    [`funcnn.ops.dense`][funcnn.ops.dense.dense]); each cotangent comes back in its operand's dtype.

    Args:
      x: a channels-last array ``(..., C)``, of any rank (0-d too) when ``slope`` is a scalar;
        integer and bool operands are promoted as above.
      slope: the learned slope for ``x <= 0``: shape ``()`` (one slope) or ``(C,)`` with
        ``C = x.shape[-1]`` (one per channel).
      grad: ``"custom"`` (hand-written VJP and JVP), ``"custom_vjp"`` or ``"autodiff"``; ``None``
        takes the mode in force ([`funcnn.grad_mode`][funcnn.core.grad_mode], ``"custom"`` outside it).

    Returns:
      ``x`` where ``x > 0``, else ``slope * x`` (``slope`` broadcast along the last axis): an array
        of ``x``'s shape, in the floating dtype both operands are cast to.

    Raises:
      LayerConfigError: when the op is called (at trace time under ``jit``) if ``x`` or ``slope`` is
        not an array or a number (``None``, a list, a tuple or a Python bool is refused) or has a
        complex or non-numeric dtype, ``slope``'s shape is neither ``()`` nor ``(x.shape[-1],)``, or
        ``grad`` is not ``None``, ``"custom"``, ``"custom_vjp"`` or ``"autodiff"``.
    """
    checks.grad_mode("prelu", grad)
    x, slope = checks.promote_operands("prelu", ("x", "slope"), x, slope)
    if slope.ndim != 0 and (slope.ndim != 1 or x.ndim == 0 or slope.shape[0] != x.shape[-1]):
        expected = "()" if x.ndim == 0 else f"() (one slope) or ({x.shape[-1]},) (one per channel)"
        raise LayerConfigError(
            f"prelu: argument `slope` has shape {tuple(slope.shape)} but x has shape {tuple(x.shape)}; "
            f"expected {expected}"
        )
    return PRELU_RULES.select(grad)(None, x, slope)


# --- softmax and log-softmax ----------------------------------------------------


def _softmax_forward(axis: int | tuple[int, ...], x: jax.Array) -> jax.Array:
    return jax.nn.softmax(x, axis=axis)


def _softmax_fwd(axis, x):
    y = _softmax_forward(axis, x)
    return y, y


def _softmax_bwd(axis, y, g):
    return ((y * (g - jnp.sum(g * y, axis=axis, keepdims=True))).astype(y.dtype),)


def _softmax_jvp(axis, y, tangents):
    """``dy = y (dx - sum(y dx))``: the Jacobian ``diag(y) - y y^T`` is symmetric: the VJP's map."""
    return _softmax_bwd(axis, y, tangents[0])[0]


SOFTMAX_RULES = HandWritten("softmax", _softmax_forward, _softmax_fwd, _softmax_bwd, _softmax_jvp)
"""Softmax's hand-written rules."""


def softmax(x: jax.Array, axis: int | tuple[int, ...] = -1, *, grad: str | None = None) -> jax.Array:
    """``e^x / sum(e^x)`` along ``axis``; VJP ``y (g - sum(g y))``.

    Args:
      x: an array with at least one axis; integer and bool inputs are promoted to the default
        float.
      axis: the axis to normalise over, negative counting from the end (default the last), or a
        tuple of distinct axes normalised over jointly.
      grad: ``"custom"`` (hand-written VJP and JVP), ``"custom_vjp"`` or ``"autodiff"``; ``None``
        takes the mode in force ([`funcnn.grad_mode`][funcnn.core.grad_mode], ``"custom"`` outside it).

    Returns:
      The softmax ``y``, an array of ``x``'s shape, in ``x``'s dtype (the default float for an
        integer or bool ``x``), non-negative and summing to 1 over ``axis``.

    Raises:
      LayerConfigError: when the op is called (at trace time under ``jit``) if ``x`` is not an array or
        a number (a list, a tuple or a Python bool is refused) or has a complex or non-numeric dtype,
        ``axis`` is not an integer or a non-empty tuple of integers, an entry of ``axis`` is out of
        range for ``x``'s rank or repeats another (a 0-d ``x`` has no axis), or ``grad`` is not
        ``None``, ``"custom"``, ``"custom_vjp"`` or ``"autodiff"``.
    """
    checks.grad_mode("softmax", grad)
    x = checks.input_array("softmax", x)
    axis = checks.axes("softmax", "axis", axis)
    checks.axis_in_range("softmax", "axis", axis, x.shape)
    return SOFTMAX_RULES.select(grad)(axis, x)


def _log_softmax_forward(axis: int | tuple[int, ...], x: jax.Array) -> jax.Array:
    return jax.nn.log_softmax(x, axis=axis)


def _log_softmax_fwd(axis, x):
    y = _log_softmax_forward(axis, x)
    return y, y


def _log_softmax_bwd(axis, y, g):
    return ((g - jnp.exp(y) * jnp.sum(g, axis=axis, keepdims=True)).astype(y.dtype),)


def _log_softmax_jvp(axis, y, tangents):
    """``dy = dx - sum(softmax(x) dx)``: the Jacobian ``I - 1 softmax(x)^T``, whose transpose is the VJP."""
    dx = tangents[0]
    return (dx - jnp.sum(jnp.exp(y) * dx, axis=axis, keepdims=True)).astype(y.dtype)


LOG_SOFTMAX_RULES = HandWritten(
    "log_softmax", _log_softmax_forward, _log_softmax_fwd, _log_softmax_bwd, _log_softmax_jvp
)
"""Log-softmax's hand-written rules."""


def log_softmax(x: jax.Array, axis: int | tuple[int, ...] = -1, *, grad: str | None = None) -> jax.Array:
    """``x - log sum(e^x)`` along ``axis``; VJP ``g - softmax(x) sum(g)``.

    Args:
      x: an array with at least one axis; integer and bool inputs are promoted to the default
        float.
      axis: the axis to normalise over, negative counting from the end (default the last), or a
        tuple of distinct axes normalised over jointly.
      grad: ``"custom"`` (hand-written VJP and JVP), ``"custom_vjp"`` or ``"autodiff"``; ``None``
        takes the mode in force ([`funcnn.grad_mode`][funcnn.core.grad_mode], ``"custom"`` outside it).

    Returns:
      ``log(softmax(x))``, computed stably: an array of ``x``'s shape, in ``x``'s dtype (the default
        float for an integer or bool ``x``).

    Raises:
      LayerConfigError: when the op is called (at trace time under ``jit``) if ``x`` is not an array or
        a number (a list, a tuple or a Python bool is refused) or has a complex or non-numeric dtype,
        ``axis`` is not an integer or a non-empty tuple of integers, an entry of ``axis`` is out of
        range for ``x``'s rank or repeats another (a 0-d ``x`` has no axis), or ``grad`` is not
        ``None``, ``"custom"``, ``"custom_vjp"`` or ``"autodiff"``.
    """
    checks.grad_mode("log_softmax", grad)
    x = checks.input_array("log_softmax", x)
    axis = checks.axes("log_softmax", "axis", axis)
    checks.axis_in_range("log_softmax", "axis", axis, x.shape)
    return LOG_SOFTMAX_RULES.select(grad)(axis, x)
