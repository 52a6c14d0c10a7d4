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
      dtype: computation dtype; ``None`` keeps a floating input's dtype and
        computes integer inputs in ``param_dtype``.
      param_dtype: dtype of the parameters.
      precision: passed to ``lax.dot_general`` forward and backward.
      grad: ``"custom"`` (hand-written VJP and JVP), ``"custom_vjp"`` or ``"autodiff"``.
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
