"""``Dense``: a fully connected layer over the last axis (the course's dense and output layers)."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax

from funcnn.core import Layer, LayerConfigError, check_positive
from funcnn.ops._grad import check_grad
from funcnn.ops.dense import dense


def Dense(
    features: int,
    use_bias: bool = True,
    kernel_init: Callable[..., jax.Array] = jax.nn.initializers.lecun_normal(),
    bias_init: Callable[..., jax.Array] = jax.nn.initializers.zeros,
    *,
    dtype: jnp.dtype | None = None,
    param_dtype: jnp.dtype = jnp.float32,
    precision: lax.Precision | None = None,
    grad: str = "custom",
) -> Layer:
    """``y = x W + b`` over the last axis of ``x``; ``W`` is ``(n_in, features)``.

    Args:
      features: output width (number of neurons).
      use_bias: add a learned bias ``b``.
      kernel_init, bias_init: ``jax.nn.initializers`` functions.
      dtype: computation dtype; ``None`` keeps the input's.
      param_dtype: dtype of the parameters.
      precision: passed to ``lax.dot_general`` forward and backward.
      grad: ``"custom"`` (hand-written VJP) or ``"autodiff"``.
    """
    check_grad("Dense", grad)
    check_positive("Dense", "features", features)

    def init(key, input_shape):
        if len(input_shape) < 2 or input_shape[-1] < 1:
            raise LayerConfigError(
                f"Dense: argument `x` must have rank >= 2 (batch, ..., features) with a known last "
                f"axis, but has shape {tuple(input_shape)}"
            )
        kernel_key, bias_key = jax.random.split(key)
        params = {"kernel": kernel_init(kernel_key, (input_shape[-1], features), param_dtype)}
        if use_bias:
            params["bias"] = bias_init(bias_key, (features,), param_dtype)
        return (*input_shape[:-1], features), params, ()

    def apply(params, state, x, *, key=None, train=False):
        kernel = params["kernel"]
        if x.ndim < 2 or x.shape[-1] != kernel.shape[0]:
            raise LayerConfigError(
                f"Dense: argument `x` has shape {x.shape} but the layer was initialised for "
                f"{kernel.shape[0]} input features (kernel shape {kernel.shape})"
            )
        dt = x.dtype if dtype is None else dtype
        bias = params.get("bias")
        y = dense(
            x.astype(dt),
            kernel.astype(dt),
            None if bias is None else bias.astype(dt),
            precision=precision,
            grad=grad,
        )
        return y, state

    return Layer(init, apply)
