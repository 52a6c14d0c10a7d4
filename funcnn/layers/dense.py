"""``Dense``: a fully connected layer over the last axis (the course's dense and output layers)."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax

from funcnn import checks
from funcnn.core import Layer, LayerConfigError, Shape
from funcnn.identity import make_layer
from funcnn.ops.dense import apply_dense
from funcnn.shapes import dot_flops


def Dense(
    features: int,
    use_bias: bool = True,
    kernel_init: Callable[..., jax.Array] = jax.nn.initializers.lecun_normal(),
    bias_init: Callable[..., jax.Array] = jax.nn.initializers.zeros,
    *,
    dtype: jnp.dtype | None = None,
    param_dtype: jnp.dtype = jnp.float32,
    precision: lax.Precision | None = None,
    grad: str | None = None,
) -> Layer:
    """``y = x W + b`` over the last axis of ``x``; ``W`` is ``(n_in, features)``.

    Args:
      features: output width (number of neurons).
      use_bias: add a learned bias ``b``.
      kernel_init: a ``jax.nn.initializers`` function for the kernel.
      bias_init: a ``jax.nn.initializers`` function for the bias.
      dtype: computation dtype (the parameters are cast to it); ``None`` keeps a floating input's dtype
        and computes integer inputs in ``param_dtype``.
      param_dtype: dtype of the parameters, a floating dtype (default ``float32``).
      precision: passed to ``lax.dot_general`` forward and backward: ``None``, a ``lax.Precision`` or
        its name, a ``lax.DotAlgorithmPreset``, or a pair of them.
      grad: ``"custom"`` (hand-written VJP and JVP), ``"custom_vjp"`` or ``"autodiff"``; ``None``
        (default) takes the [`grad_mode`][funcnn.core.grad_mode] in force at construction.

    Shapes:
      Input ``(N, ..., n_in)``, rank >= 2; the leading axes are kept.
      Output ``(N, ..., features)``, in the computation dtype.

    Returns:
      The layer, an ``(init, apply)`` pair whose ``init`` gives the params ``{"kernel": W, "bias": b}``,
        of shapes ``(n_in, features)`` and ``(features,)`` (no ``"bias"`` when ``use_bias=False``), in
        ``param_dtype``, and no state (``()``).

    Raises:
      LayerConfigError: at construction, when ``features`` is not a positive integer (bools and floats
        refused), ``use_bias`` is not a bool, ``kernel_init`` or ``bias_init`` is not callable, ``dtype``
        or ``param_dtype`` is not a floating dtype JAX holds, ``precision`` is none of the above or
        ``grad`` is not ``None`` or one of the three modes; at ``init``, when ``key`` is not a PRNG key,
        ``input_shape`` is not a shape of positive sizes (the batch may be ``-1``) or has rank < 2, or an
        initializer (``bias_init`` only with ``use_bias``) cannot be called as ``init(key, shape, dtype)``,
        returns a function (a factory passed uncalled) or does not return a floating array of the
        parameter's shape; when ``apply`` is traced, when ``x`` has rank < 2 or a last axis other than the
        ``n_in`` the kernel was initialised for, ``params`` does not hold exactly the leaves ``init``
        builds with their shapes, or ``x`` is complex, non-numeric, or a list or tuple rather than an array.
    """
    name = "Dense"
    features = checks.positive_int(name, "features", features)
    use_bias = checks.boolean(name, "use_bias", use_bias)
    kernel_init = checks.initializer(name, "kernel_init", kernel_init)
    bias_init = checks.initializer(name, "bias_init", bias_init)
    dtype = checks.dtype_or_none(name, "dtype", dtype)
    param_dtype = checks.dtype_or_none(name, "param_dtype", param_dtype) or jnp.dtype(jnp.float32)
    precision = checks.precision(name, precision)
    grad = checks.grad_mode(name, grad)

    def param_shapes(input_shape: Shape) -> dict[str, Shape]:
        """The one source of the parameter shapes, for ``init`` and ``apply``'s check."""
        if len(input_shape) < 2:
            raise LayerConfigError(
                f"Dense: argument `x` must have rank >= 2 (batch, ..., features), "
                f"but has shape {tuple(input_shape)}"
            )
        shapes = {"kernel": (input_shape[-1], features)}
        if use_bias:
            shapes["bias"] = (features,)
        return shapes

    def init(key, input_shape):
        shapes = param_shapes(input_shape)
        kernel_key, bias_key = jax.random.split(key)
        inits = {"kernel": (kernel_init, kernel_key), "bias": (bias_init, bias_key)}
        params = {
            leaf: checks.initialised(name, f"{leaf}_init", inits[leaf][0], inits[leaf][1], shape, param_dtype)
            for leaf, shape in shapes.items()
        }
        return (*input_shape[:-1], features), params, ()

    def apply(params, state, x, *, key=None, train=False):
        x = checks.input_array(name, x, dtype, fallback=param_dtype)
        shapes = param_shapes(x.shape)
        checks.check_width(name, x.shape, params, "kernel", 0)
        checks.check_leaves(name, "params", shapes, params, f"an input of shape {tuple(x.shape)}")
        bias = params["bias"].astype(x.dtype) if use_bias else None
        return apply_dense(precision, x, params["kernel"].astype(x.dtype), bias, grad), state

    return make_layer(name, init, apply, flops=dot_flops)
