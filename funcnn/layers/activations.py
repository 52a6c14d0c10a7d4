"""Activation layers: elementwise functions, (log-)softmax, and PReLU with its learned slope.

Each wraps an op of ``funcnn.ops.activations``, which owns the hand-written
VJP. Integer and bool inputs are promoted to the default float (or ``dtype``).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from funcnn import checks
from funcnn.core import Layer, LayerConfigError, Shape
from funcnn.identity import make_layer
from funcnn.ops import activations


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


def Relu(*, dtype: jnp.dtype | None = None, grad: str | None = None) -> Layer:
    """``max(x, 0)``.

    Args:
      dtype: computation dtype, a floating dtype; ``None`` (default) keeps a floating input's dtype
        and computes integer and bool inputs in the default float (``float32``, ``float64`` under x64).
      grad: ``"custom"`` (hand-written VJP and JVP), ``"custom_vjp"`` (the same VJP through
        ``jax.custom_vjp``, reverse mode only) or ``"autodiff"``; ``None`` (default) takes the
        [`grad_mode`][funcnn.core.grad_mode] in force at construction.

    Shapes:
      Input any shape, of any rank (``init`` needs at least the batch axis).
      Output the input's shape, in the computation dtype.

    Returns:
      The layer, an ``(init, apply)`` pair with no parameters and no state (``init`` gives ``()`` for both).

    Raises:
      LayerConfigError: at construction, when ``dtype`` is not a floating dtype JAX holds or ``grad`` is not
        ``None`` or one of the three modes; at ``init``, when ``key`` is not a PRNG key or ``input_shape`` is
        not a shape of positive sizes (the batch may be ``-1``); when ``apply`` is traced, when ``params`` is
        not empty or ``x`` is complex, non-numeric, or a list or tuple rather than an array.
    """
    return _activation("Relu", dtype, grad, lambda x, grad: activations.relu(x, grad=grad))


def Sigmoid(*, dtype: jnp.dtype | None = None, grad: str | None = None) -> Layer:
    """``1 / (1 + e^-x)``.

    Args:
      dtype: computation dtype, a floating dtype; ``None`` (default) keeps a floating input's dtype
        and computes integer and bool inputs in the default float (``float32``, ``float64`` under x64).
      grad: ``"custom"`` (hand-written VJP and JVP), ``"custom_vjp"`` (the same VJP through
        ``jax.custom_vjp``, reverse mode only) or ``"autodiff"``; ``None`` (default) takes the
        [`grad_mode`][funcnn.core.grad_mode] in force at construction.

    Shapes:
      Input any shape, of any rank (``init`` needs at least the batch axis).
      Output the input's shape, in the computation dtype.

    Returns:
      The layer, an ``(init, apply)`` pair with no parameters and no state (``init`` gives ``()`` for both).

    Raises:
      LayerConfigError: at construction, when ``dtype`` is not a floating dtype JAX holds or ``grad`` is not
        ``None`` or one of the three modes; at ``init``, when ``key`` is not a PRNG key or ``input_shape`` is
        not a shape of positive sizes (the batch may be ``-1``); when ``apply`` is traced, when ``params`` is
        not empty or ``x`` is complex, non-numeric, or a list or tuple rather than an array.
    """
    return _activation("Sigmoid", dtype, grad, lambda x, grad: activations.sigmoid(x, grad=grad))


def Tanh(*, dtype: jnp.dtype | None = None, grad: str | None = None) -> Layer:
    """``tanh(x)``.

    Args:
      dtype: computation dtype, a floating dtype; ``None`` (default) keeps a floating input's dtype
        and computes integer and bool inputs in the default float (``float32``, ``float64`` under x64).
      grad: ``"custom"`` (hand-written VJP and JVP), ``"custom_vjp"`` (the same VJP through
        ``jax.custom_vjp``, reverse mode only) or ``"autodiff"``; ``None`` (default) takes the
        [`grad_mode`][funcnn.core.grad_mode] in force at construction.

    Shapes:
      Input any shape, of any rank (``init`` needs at least the batch axis).
      Output the input's shape, in the computation dtype.

    Returns:
      The layer, an ``(init, apply)`` pair with no parameters and no state (``init`` gives ``()`` for both).

    Raises:
      LayerConfigError: at construction, when ``dtype`` is not a floating dtype JAX holds or ``grad`` is not
        ``None`` or one of the three modes; at ``init``, when ``key`` is not a PRNG key or ``input_shape`` is
        not a shape of positive sizes (the batch may be ``-1``); when ``apply`` is traced, when ``params`` is
        not empty or ``x`` is complex, non-numeric, or a list or tuple rather than an array.
    """
    return _activation("Tanh", dtype, grad, lambda x, grad: activations.tanh(x, grad=grad))


def LeakyRelu(
    negative_slope: float = 0.01, *, dtype: jnp.dtype | None = None, grad: str | None = None
) -> Layer:
    """``x`` if ``x > 0`` else ``negative_slope * x``.

    Args:
      negative_slope: the slope for ``x <= 0``, any finite real number (default 0.01).
      dtype: computation dtype, a floating dtype; ``None`` (default) keeps a floating input's dtype
        and computes integer and bool inputs in the default float (``float32``, ``float64`` under x64).
      grad: ``"custom"`` (hand-written VJP and JVP), ``"custom_vjp"`` (the same VJP through
        ``jax.custom_vjp``, reverse mode only) or ``"autodiff"``; ``None`` (default) takes the
        [`grad_mode`][funcnn.core.grad_mode] in force at construction.

    Shapes:
      Input any shape, of any rank (``init`` needs at least the batch axis).
      Output the input's shape, in the computation dtype.

    Returns:
      The layer, an ``(init, apply)`` pair with no parameters and no state (``init`` gives ``()`` for both).

    Raises:
      LayerConfigError: at construction, when ``negative_slope`` is not a finite real number (bools refused),
        ``dtype`` is not a floating dtype JAX holds or ``grad`` is not ``None`` or one of the three modes; at
        ``init``, when ``key`` is not a PRNG key or ``input_shape`` is not a shape of positive sizes (the
        batch may be ``-1``); when ``apply`` is traced, when ``params`` is not empty or ``x`` is complex,
        non-numeric, or a list or tuple rather than an array.
    """
    slope = checks.real("LeakyRelu", "negative_slope", negative_slope)
    return _activation("LeakyRelu", dtype, grad, lambda x, grad: activations.leaky_relu(x, slope, grad=grad))


def Elu(alpha: float = 1.0, *, dtype: jnp.dtype | None = None, grad: str | None = None) -> Layer:
    """``x`` if ``x > 0`` else ``alpha (e^x - 1)``.

    Args:
      alpha: the scale of the negative branch, any finite real number (default 1).
      dtype: computation dtype, a floating dtype; ``None`` (default) keeps a floating input's dtype
        and computes integer and bool inputs in the default float (``float32``, ``float64`` under x64).
      grad: ``"custom"`` (hand-written VJP and JVP), ``"custom_vjp"`` (the same VJP through
        ``jax.custom_vjp``, reverse mode only) or ``"autodiff"``; ``None`` (default) takes the
        [`grad_mode`][funcnn.core.grad_mode] in force at construction.

    Shapes:
      Input any shape, of any rank (``init`` needs at least the batch axis).
      Output the input's shape, in the computation dtype.

    Returns:
      The layer, an ``(init, apply)`` pair with no parameters and no state (``init`` gives ``()`` for both).

    Raises:
      LayerConfigError: at construction, when ``alpha`` is not a finite real number (bools refused), ``dtype``
        is not a floating dtype JAX holds or ``grad`` is not ``None`` or one of the three modes; at ``init``,
        when ``key`` is not a PRNG key or ``input_shape`` is not a shape of positive sizes (the batch may be
        ``-1``); when ``apply`` is traced, when ``params`` is not empty or ``x`` is complex, non-numeric, or a
        list or tuple rather than an array.
    """
    alpha = checks.real("Elu", "alpha", alpha)
    return _activation("Elu", dtype, grad, lambda x, grad: activations.elu(x, alpha, grad=grad))


def Gelu(approximate: bool = True, *, dtype: jnp.dtype | None = None, grad: str | None = None) -> Layer:
    """``x Phi(x)``, by default with the tanh approximation (as ``jax.nn.gelu``).

    Args:
      approximate: ``True`` (default) for the tanh approximation, ``False`` for the exact
        ``x Phi(x)`` with ``Phi`` from ``erf``; a Python or NumPy bool.
      dtype: computation dtype, a floating dtype; ``None`` (default) keeps a floating input's dtype
        and computes integer and bool inputs in the default float (``float32``, ``float64`` under x64).
      grad: ``"custom"`` (hand-written VJP and JVP), ``"custom_vjp"`` (the same VJP through
        ``jax.custom_vjp``, reverse mode only) or ``"autodiff"``; ``None`` (default) takes the
        [`grad_mode`][funcnn.core.grad_mode] in force at construction.

    Shapes:
      Input any shape, of any rank (``init`` needs at least the batch axis).
      Output the input's shape, in the computation dtype.

    Returns:
      The layer, an ``(init, apply)`` pair with no parameters and no state (``init`` gives ``()`` for both).

    Raises:
      LayerConfigError: at construction, when ``approximate`` is not a bool, ``dtype`` is not a floating dtype
        JAX holds or ``grad`` is not ``None`` or one of the three modes; at ``init``, when ``key`` is not a
        PRNG key or ``input_shape`` is not a shape of positive sizes (the batch may be ``-1``); when ``apply``
        is traced, when ``params`` is not empty or ``x`` is complex, non-numeric, or a list or tuple rather
        than an array.
    """
    approximate = checks.boolean("Gelu", "approximate", approximate)
    return _activation("Gelu", dtype, grad, lambda x, grad: activations.gelu(x, approximate, grad=grad))


def Relu6(*, dtype: jnp.dtype | None = None, grad: str | None = None) -> Layer:
    """``min(max(x, 0), 6)``, as PyTorch's ``ReLU6``.

    Args:
      dtype: computation dtype, a floating dtype; ``None`` (default) keeps a floating input's dtype
        and computes integer and bool inputs in the default float (``float32``, ``float64`` under x64).
      grad: ``"custom"`` (hand-written VJP and JVP), ``"custom_vjp"`` (the same VJP through
        ``jax.custom_vjp``, reverse mode only) or ``"autodiff"``; ``None`` (default) takes the
        [`grad_mode`][funcnn.core.grad_mode] in force at construction.

    Shapes:
      Input any shape, of any rank (``init`` needs at least the batch axis).
      Output the input's shape, in the computation dtype.

    Returns:
      The layer, an ``(init, apply)`` pair with no parameters and no state (``init`` gives ``()`` for both).

    Raises:
      LayerConfigError: at construction, when ``dtype`` is not a floating dtype JAX holds or ``grad`` is not
        ``None`` or one of the three modes; at ``init``, when ``key`` is not a PRNG key or ``input_shape`` is
        not a shape of positive sizes (the batch may be ``-1``); when ``apply`` is traced, when ``params`` is
        not empty or ``x`` is complex, non-numeric, or a list or tuple rather than an array.
    """
    return _activation("Relu6", dtype, grad, lambda x, grad: activations.relu6(x, grad=grad))


def Silu(*, dtype: jnp.dtype | None = None, grad: str | None = None) -> Layer:
    """``x sigma(x)`` (swish), as PyTorch's ``SiLU``.

    Args:
      dtype: computation dtype, a floating dtype; ``None`` (default) keeps a floating input's dtype
        and computes integer and bool inputs in the default float (``float32``, ``float64`` under x64).
      grad: ``"custom"`` (hand-written VJP and JVP), ``"custom_vjp"`` (the same VJP through
        ``jax.custom_vjp``, reverse mode only) or ``"autodiff"``; ``None`` (default) takes the
        [`grad_mode`][funcnn.core.grad_mode] in force at construction.

    Shapes:
      Input any shape, of any rank (``init`` needs at least the batch axis).
      Output the input's shape, in the computation dtype.

    Returns:
      The layer, an ``(init, apply)`` pair with no parameters and no state (``init`` gives ``()`` for both).

    Raises:
      LayerConfigError: at construction, when ``dtype`` is not a floating dtype JAX holds or ``grad`` is not
        ``None`` or one of the three modes; at ``init``, when ``key`` is not a PRNG key or ``input_shape`` is
        not a shape of positive sizes (the batch may be ``-1``); when ``apply`` is traced, when ``params`` is
        not empty or ``x`` is complex, non-numeric, or a list or tuple rather than an array.
    """
    return _activation("Silu", dtype, grad, lambda x, grad: activations.silu(x, grad=grad))


def Softplus(
    beta: float = 1.0, threshold: float = 20.0, *, dtype: jnp.dtype | None = None, grad: str | None = None
) -> Layer:
    """``log(1 + e^(beta x)) / beta``, and ``x`` where ``beta x > threshold``, as PyTorch's ``Softplus``.

    Args:
      beta: the sharpness, ``> 0``.
      threshold: the value of ``beta x`` above which the layer is the identity
        ([`funcnn.ops.activations.softplus`][funcnn.ops.activations.softplus]).
      dtype: computation dtype; ``None`` keeps a floating input's dtype and computes integer and
        bool inputs in the default float.
      grad: ``"custom"`` (hand-written VJP and JVP), ``"custom_vjp"`` or ``"autodiff"``; ``None``
        (default) takes the [`grad_mode`][funcnn.core.grad_mode] in force at construction.

    Shapes:
      Input any shape, of any rank (``init`` needs at least the batch axis).
      Output the input's shape, in the computation dtype.

    Returns:
      The layer, an ``(init, apply)`` pair with no parameters and no state (``init`` gives ``()`` for both).

    Raises:
      LayerConfigError: at construction, when ``beta`` is not a finite real number ``> 0``, ``threshold``
        is not a finite real number, ``dtype`` is not a floating dtype JAX holds or ``grad`` is not ``None``
        or one of the three modes; at ``init``, when ``key`` is not a PRNG key or ``input_shape`` is not a
        shape of positive sizes (the batch may be ``-1``); when ``apply`` is traced, when ``params`` is not
        empty or ``x`` is complex, non-numeric, or a list or tuple rather than an array.
    """
    beta = checks.real("Softplus", "beta", beta, low=0.0, low_open=True)
    threshold = checks.real("Softplus", "threshold", threshold)
    return _activation(
        "Softplus", dtype, grad, lambda x, grad: activations.softplus(x, beta, threshold, grad=grad)
    )


def Softsign(*, dtype: jnp.dtype | None = None, grad: str | None = None) -> Layer:
    """``x / (1 + |x|)``.

    Args:
      dtype: computation dtype, a floating dtype; ``None`` (default) keeps a floating input's dtype
        and computes integer and bool inputs in the default float (``float32``, ``float64`` under x64).
      grad: ``"custom"`` (hand-written VJP and JVP), ``"custom_vjp"`` (the same VJP through
        ``jax.custom_vjp``, reverse mode only) or ``"autodiff"``; ``None`` (default) takes the
        [`grad_mode`][funcnn.core.grad_mode] in force at construction.

    Shapes:
      Input any shape, of any rank (``init`` needs at least the batch axis).
      Output the input's shape, in the computation dtype.

    Returns:
      The layer, an ``(init, apply)`` pair with no parameters and no state (``init`` gives ``()`` for both).

    Raises:
      LayerConfigError: at construction, when ``dtype`` is not a floating dtype JAX holds or ``grad`` is not
        ``None`` or one of the three modes; at ``init``, when ``key`` is not a PRNG key or ``input_shape`` is
        not a shape of positive sizes (the batch may be ``-1``); when ``apply`` is traced, when ``params`` is
        not empty or ``x`` is complex, non-numeric, or a list or tuple rather than an array.
    """
    return _activation("Softsign", dtype, grad, lambda x, grad: activations.softsign(x, grad=grad))


def Selu(*, dtype: jnp.dtype | None = None, grad: str | None = None) -> Layer:
    """``lambda elu(x, alpha)`` with the self-normalising constants, as PyTorch's ``SELU``.

    Args:
      dtype: computation dtype, a floating dtype; ``None`` (default) keeps a floating input's dtype
        and computes integer and bool inputs in the default float (``float32``, ``float64`` under x64).
      grad: ``"custom"`` (hand-written VJP and JVP), ``"custom_vjp"`` (the same VJP through
        ``jax.custom_vjp``, reverse mode only) or ``"autodiff"``; ``None`` (default) takes the
        [`grad_mode`][funcnn.core.grad_mode] in force at construction.

    Shapes:
      Input any shape, of any rank (``init`` needs at least the batch axis).
      Output the input's shape, in the computation dtype.

    Returns:
      The layer, an ``(init, apply)`` pair with no parameters and no state (``init`` gives ``()`` for both).

    Raises:
      LayerConfigError: at construction, when ``dtype`` is not a floating dtype JAX holds or ``grad`` is not
        ``None`` or one of the three modes; at ``init``, when ``key`` is not a PRNG key or ``input_shape`` is
        not a shape of positive sizes (the batch may be ``-1``); when ``apply`` is traced, when ``params`` is
        not empty or ``x`` is complex, non-numeric, or a list or tuple rather than an array.
    """
    return _activation("Selu", dtype, grad, lambda x, grad: activations.selu(x, grad=grad))


def Celu(alpha: float = 1.0, *, dtype: jnp.dtype | None = None, grad: str | None = None) -> Layer:
    """``x`` if ``x > 0`` else ``alpha (e^(x / alpha) - 1)``; ``alpha`` nonzero.

    Args:
      alpha: the scale of the negative branch and of ``x`` inside the exponential, a nonzero
        finite real number (default 1).
      dtype: computation dtype, a floating dtype; ``None`` (default) keeps a floating input's dtype
        and computes integer and bool inputs in the default float (``float32``, ``float64`` under x64).
      grad: ``"custom"`` (hand-written VJP and JVP), ``"custom_vjp"`` (the same VJP through
        ``jax.custom_vjp``, reverse mode only) or ``"autodiff"``; ``None`` (default) takes the
        [`grad_mode`][funcnn.core.grad_mode] in force at construction.

    Shapes:
      Input any shape, of any rank (``init`` needs at least the batch axis).
      Output the input's shape, in the computation dtype.

    Returns:
      The layer, an ``(init, apply)`` pair with no parameters and no state (``init`` gives ``()`` for both).

    Raises:
      LayerConfigError: at construction, when ``alpha`` is not a finite real number or is 0, ``dtype`` is not
        a floating dtype JAX holds or ``grad`` is not ``None`` or one of the three modes; at ``init``, when
        ``key`` is not a PRNG key or ``input_shape`` is not a shape of positive sizes (the batch may be
        ``-1``); when ``apply`` is traced, when ``params`` is not empty or ``x`` is complex, non-numeric, or a
        list or tuple rather than an array.
    """
    alpha = activations.celu_alpha("Celu", alpha)
    return _activation("Celu", dtype, grad, lambda x, grad: activations.celu(x, alpha, grad=grad))


def LogSigmoid(*, dtype: jnp.dtype | None = None, grad: str | None = None) -> Layer:
    """``log sigma(x) = -log(1 + e^-x)``, computed stably.

    Args:
      dtype: computation dtype, a floating dtype; ``None`` (default) keeps a floating input's dtype
        and computes integer and bool inputs in the default float (``float32``, ``float64`` under x64).
      grad: ``"custom"`` (hand-written VJP and JVP), ``"custom_vjp"`` (the same VJP through
        ``jax.custom_vjp``, reverse mode only) or ``"autodiff"``; ``None`` (default) takes the
        [`grad_mode`][funcnn.core.grad_mode] in force at construction.

    Shapes:
      Input any shape, of any rank (``init`` needs at least the batch axis).
      Output the input's shape, in the computation dtype.

    Returns:
      The layer, an ``(init, apply)`` pair with no parameters and no state (``init`` gives ``()`` for both).

    Raises:
      LayerConfigError: at construction, when ``dtype`` is not a floating dtype JAX holds or ``grad`` is not
        ``None`` or one of the three modes; at ``init``, when ``key`` is not a PRNG key or ``input_shape`` is
        not a shape of positive sizes (the batch may be ``-1``); when ``apply`` is traced, when ``params`` is
        not empty or ``x`` is complex, non-numeric, or a list or tuple rather than an array.
    """
    return _activation("LogSigmoid", dtype, grad, lambda x, grad: activations.log_sigmoid(x, grad=grad))


def HardSigmoid(*, dtype: jnp.dtype | None = None, grad: str | None = None) -> Layer:
    """``relu6(x + 3) / 6``, as PyTorch's ``Hardsigmoid``, ``jax.nn.hard_sigmoid`` and Keras 3.

    Args:
      dtype: computation dtype, a floating dtype; ``None`` (default) keeps a floating input's dtype
        and computes integer and bool inputs in the default float (``float32``, ``float64`` under x64).
      grad: ``"custom"`` (hand-written VJP and JVP), ``"custom_vjp"`` (the same VJP through
        ``jax.custom_vjp``, reverse mode only) or ``"autodiff"``; ``None`` (default) takes the
        [`grad_mode`][funcnn.core.grad_mode] in force at construction.

    Shapes:
      Input any shape, of any rank (``init`` needs at least the batch axis).
      Output the input's shape, in the computation dtype.

    Returns:
      The layer, an ``(init, apply)`` pair with no parameters and no state (``init`` gives ``()`` for both).

    Raises:
      LayerConfigError: at construction, when ``dtype`` is not a floating dtype JAX holds or ``grad`` is not
        ``None`` or one of the three modes; at ``init``, when ``key`` is not a PRNG key or ``input_shape`` is
        not a shape of positive sizes (the batch may be ``-1``); when ``apply`` is traced, when ``params`` is
        not empty or ``x`` is complex, non-numeric, or a list or tuple rather than an array.
    """
    return _activation("HardSigmoid", dtype, grad, lambda x, grad: activations.hard_sigmoid(x, grad=grad))


def HardSilu(*, dtype: jnp.dtype | None = None, grad: str | None = None) -> Layer:
    """``x relu6(x + 3) / 6``, as PyTorch's ``Hardswish`` and ``jax.nn.hard_silu``.

    Args:
      dtype: computation dtype, a floating dtype; ``None`` (default) keeps a floating input's dtype
        and computes integer and bool inputs in the default float (``float32``, ``float64`` under x64).
      grad: ``"custom"`` (hand-written VJP and JVP), ``"custom_vjp"`` (the same VJP through
        ``jax.custom_vjp``, reverse mode only) or ``"autodiff"``; ``None`` (default) takes the
        [`grad_mode`][funcnn.core.grad_mode] in force at construction.

    Shapes:
      Input any shape, of any rank (``init`` needs at least the batch axis).
      Output the input's shape, in the computation dtype.

    Returns:
      The layer, an ``(init, apply)`` pair with no parameters and no state (``init`` gives ``()`` for both).

    Raises:
      LayerConfigError: at construction, when ``dtype`` is not a floating dtype JAX holds or ``grad`` is not
        ``None`` or one of the three modes; at ``init``, when ``key`` is not a PRNG key or ``input_shape`` is
        not a shape of positive sizes (the batch may be ``-1``); when ``apply`` is traced, when ``params`` is
        not empty or ``x`` is complex, non-numeric, or a list or tuple rather than an array.
    """
    return _activation("HardSilu", dtype, grad, lambda x, grad: activations.hard_silu(x, grad=grad))


def PRelu(
    per_channel: bool = False,
    initial_slope: float = 0.25,
    *,
    dtype: jnp.dtype | None = None,
    param_dtype: jnp.dtype = jnp.float32,
    grad: str | None = None,
) -> Layer:
    """Parametric ReLU: ``x`` if ``x > 0`` else ``slope * x``, the slope learned.

    ``params`` is ``{"slope": array}`` of shape ``()`` (one slope for every
    entry, the default, as PyTorch's ``PReLU()``, Flax's and Equinox's) or,
    with ``per_channel=True``, ``(C,)`` for the last (channels) axis (PyTorch's
    ``PReLU(num_parameters=C)``; the channel count comes from ``init``'s
    input shape). Every slope starts at ``initial_slope``, PyTorch's 0.25 by
    default. PyTorch recommends no weight decay on the slopes.

    Args:
      per_channel: one slope per channel instead of one in all.
      initial_slope: the slopes' initial value, any finite real number.
      dtype: computation dtype; ``None`` keeps a floating input's dtype and
        computes integer inputs in ``param_dtype``.
      param_dtype: dtype of the slope, a floating dtype (default ``float32``).
      grad: ``"custom"`` (hand-written VJP, [`funcnn.ops.activations.prelu`][funcnn.ops.activations.prelu]),
        ``"custom_vjp"`` (the same VJP through ``jax.custom_vjp``) or ``"autodiff"``; ``None`` (default)
        takes the [`grad_mode`][funcnn.core.grad_mode] in force at construction.

    Shapes:
      Input any shape, of any rank (``init`` needs the batch axis); with ``per_channel=True`` rank >= 2,
      ``(N, ..., C)``, channels last.
      Output the input's shape, in the computation dtype.

    Returns:
      The layer, an ``(init, apply)`` pair whose ``init`` gives the params ``{"slope": array}`` of shape
        ``()`` or ``(C,)`` in ``param_dtype``, and no state (``()``).

    Raises:
      LayerConfigError: at construction, when ``per_channel`` is not a bool, ``initial_slope`` is not a
        finite real number, ``dtype`` or ``param_dtype`` is not a floating dtype JAX holds or ``grad`` is
        not ``None`` or one of the three modes; at ``init``, when ``key`` is not a PRNG key, ``input_shape``
        is not a shape of positive sizes (the batch may be ``-1``), or ``per_channel=True`` and the input
        has rank < 2; when ``apply`` is traced, when (with ``per_channel=True``) ``x`` has rank < 2 or a
        last axis other than the ``C`` the slope was initialised for, when ``params`` is not
        ``{"slope": array}`` of the shape ``init`` builds for ``x`` (a missing or extra leaf, another
        shape), or when ``x`` is complex, non-numeric, or a list or tuple rather than an array.
    """
    name = "PRelu"
    per_channel = checks.boolean(name, "per_channel", per_channel)
    initial_slope = checks.real(name, "initial_slope", initial_slope)
    dtype = checks.dtype_or_none(name, "dtype", dtype)
    param_dtype = checks.dtype_or_none(name, "param_dtype", param_dtype) or jnp.dtype(jnp.float32)
    grad = checks.grad_mode(name, grad)

    def slope_shape(input_shape: Shape) -> Shape:
        """The one source of the slope's shape, for ``init`` and ``apply``'s check."""
        if not per_channel:
            return ()
        if len(input_shape) < 2:
            raise LayerConfigError(
                f"PRelu: argument `x` must have rank >= 2 (batch, ..., channels) for per_channel=True, "
                f"but has shape {tuple(input_shape)}"
            )
        return (input_shape[-1],)

    def init(key, input_shape):
        return (
            tuple(input_shape),
            {"slope": jnp.full(slope_shape(input_shape), initial_slope, param_dtype)},
            (),
        )

    def apply(params, state, x, *, key=None, train=False):
        x = checks.input_array(name, x, dtype, fallback=param_dtype)
        shape = slope_shape(x.shape)
        if per_channel:
            checks.check_width(name, x.shape, params, "slope", 0)
        checks.check_leaves(name, "params", {"slope": shape}, params, f"an input of shape {tuple(x.shape)}")
        return activations.prelu(x, params["slope"].astype(x.dtype), grad=grad), state

    return make_layer(name, init, apply)


def _along_axis(
    name: str, axis: int | tuple[int, ...], dtype, grad: str, op: Callable[..., jax.Array]
) -> Layer:
    axis = checks.axes(name, "axis", axis)

    def check_shape(shape: tuple[int, ...]) -> None:
        checks.axis_in_range(name, "axis", axis, shape)

    return _activation(name, dtype, grad, lambda x, grad: op(x, axis, grad=grad), check_shape)


def Softmax(
    axis: int | tuple[int, ...] = -1, *, dtype: jnp.dtype | None = None, grad: str | None = None
) -> Layer:
    """``e^x / sum(e^x)`` along ``axis``: class probabilities from logits.

    Args:
      axis: the axis normalised over (negative from the end; default -1, the classes of ``(N, classes)``
        logits), or a non-empty tuple of axes normalised over together.
      dtype: computation dtype, a floating dtype; ``None`` (default) keeps a floating input's dtype
        and computes integer and bool inputs in the default float (``float32``, ``float64`` under x64).
      grad: ``"custom"`` (hand-written VJP and JVP), ``"custom_vjp"`` (the same VJP through
        ``jax.custom_vjp``, reverse mode only) or ``"autodiff"``; ``None`` (default) takes the
        [`grad_mode`][funcnn.core.grad_mode] in force at construction.

    Shapes:
      Input any shape whose rank admits ``axis`` (``-rank <= axis < rank`` for each entry), batch first.
      Output the input's shape, in the computation dtype.

    Returns:
      The layer, an ``(init, apply)`` pair with no parameters and no state (``init`` gives ``()`` for both).

    Raises:
      LayerConfigError: at construction, when ``axis`` is not an integer or a non-empty tuple (or list) of
        integers, ``dtype`` is not a floating dtype JAX holds or ``grad`` is not ``None`` or one of the three
        modes; at ``init``, when ``key`` is not a PRNG key or ``input_shape`` is not a shape of positive sizes
        (the batch may be ``-1``), or ``axis`` is out of range for the input's rank or names one axis twice
        (checked again when ``apply`` is traced); when ``apply`` is traced, when ``params`` is not empty or
        ``x`` is complex, non-numeric, or a list or tuple rather than an array.
    """
    return _along_axis("Softmax", axis, dtype, grad, activations.softmax)


def LogSoftmax(
    axis: int | tuple[int, ...] = -1, *, dtype: jnp.dtype | None = None, grad: str | None = None
) -> Layer:
    """``x - log sum(e^x)`` along ``axis``.

    Args:
      axis: the axis normalised over (negative from the end; default -1, the classes of ``(N, classes)``
        logits), or a non-empty tuple of axes normalised over together.
      dtype: computation dtype, a floating dtype; ``None`` (default) keeps a floating input's dtype
        and computes integer and bool inputs in the default float (``float32``, ``float64`` under x64).
      grad: ``"custom"`` (hand-written VJP and JVP), ``"custom_vjp"`` (the same VJP through
        ``jax.custom_vjp``, reverse mode only) or ``"autodiff"``; ``None`` (default) takes the
        [`grad_mode`][funcnn.core.grad_mode] in force at construction.

    Shapes:
      Input any shape whose rank admits ``axis`` (``-rank <= axis < rank`` for each entry), batch first.
      Output the input's shape, in the computation dtype.

    Returns:
      The layer, an ``(init, apply)`` pair with no parameters and no state (``init`` gives ``()`` for both).

    Raises:
      LayerConfigError: at construction, when ``axis`` is not an integer or a non-empty tuple (or list) of
        integers, ``dtype`` is not a floating dtype JAX holds or ``grad`` is not ``None`` or one of the three
        modes; at ``init``, when ``key`` is not a PRNG key or ``input_shape`` is not a shape of positive sizes
        (the batch may be ``-1``), or ``axis`` is out of range for the input's rank or names one axis twice
        (checked again when ``apply`` is traced); when ``apply`` is traced, when ``params`` is not empty or
        ``x`` is complex, non-numeric, or a list or tuple rather than an array.
    """
    return _along_axis("LogSoftmax", axis, dtype, grad, activations.log_softmax)
