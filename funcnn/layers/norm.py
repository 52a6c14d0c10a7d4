"""Normalisation layers: ``BatchNorm``, ``LayerNorm``, ``GroupNorm`` (channels last).

Each computes ``y = scale * (x - mean) / sqrt(var + epsilon) + bias`` with the
mean and (biased) variance taken over different axes:

* BatchNorm: over the batch and spatial axes, per channel; running
  statistics for evaluation.
* LayerNorm: over the last axis, per example.
* GroupNorm: over the spatial axes and the channels of each group, per example.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from funcnn.core import Layer, LayerConfigError, check_positive, check_rank

Initializer = Callable[..., jax.Array]


class BatchNormState(NamedTuple):
    """Running per-channel statistics of ``BatchNorm``, used in evaluation."""

    mean: jax.Array
    var: jax.Array


def _affine_params(channels, use_scale, use_bias, scale_init, bias_init, param_dtype, key) -> dict:
    scale_key, bias_key = jax.random.split(key)
    params = {}
    if use_scale:
        params["scale"] = scale_init(scale_key, (channels,), param_dtype)
    if use_bias:
        params["bias"] = bias_init(bias_key, (channels,), param_dtype)
    return params


def _check_width(layer: str, x_shape, params: dict) -> None:
    """The affine parameters were made for ``x``'s last axis at ``init``."""
    for name, value in params.items():
        if value.shape[0] != x_shape[-1]:
            raise LayerConfigError(
                f"{layer}: argument `x` has {x_shape[-1]} channels (x.shape={tuple(x_shape)}) but the "
                f"layer's `{name}` was initialised for {value.shape[0]}"
            )


def _normalize(x, mean, var, epsilon, params) -> jax.Array:
    """``scale * (x - mean) / sqrt(var + epsilon) + bias``."""
    mean = lax.broadcast_to_rank(mean.astype(x.dtype), x.ndim)
    var = lax.broadcast_to_rank(var.astype(x.dtype), x.ndim)
    return _affine((x - mean) * lax.rsqrt(var + jnp.asarray(epsilon, x.dtype)), params)


def _affine(y, params) -> jax.Array:
    """``scale * y + bias`` for whichever of the two the layer learns."""
    if "scale" in params:
        y = y * lax.broadcast_to_rank(params["scale"].astype(y.dtype), y.ndim)
    if "bias" in params:
        y = y + lax.broadcast_to_rank(params["bias"].astype(y.dtype), y.ndim)
    return y


def BatchNorm(
    momentum: float = 0.99,
    epsilon: float = 1e-5,
    use_scale: bool = True,
    use_bias: bool = True,
    scale_init: Initializer = jax.nn.initializers.ones,
    bias_init: Initializer = jax.nn.initializers.zeros,
    *,
    param_dtype: jnp.dtype = jnp.float32,
) -> Layer:
    """Batch normalisation over every axis but the channels (the last).

    In training (``train=True``) it normalises with the batch's statistics and
    returns the running statistics moved towards them:
    ``running = momentum * running + (1 - momentum) * batch``. In evaluation
    it normalises with the running statistics and returns the state
    unchanged, so evaluation is deterministic.

    Args:
      momentum: decay of the running statistics, in ``[0, 1)``.
      epsilon: added to the variance.
      use_scale, use_bias: learn ``scale`` and ``bias`` per channel.
      scale_init, bias_init: ``jax.nn.initializers`` functions.
      param_dtype: dtype of the parameters and running statistics.
    """
    if not 0.0 <= momentum < 1.0:
        raise LayerConfigError(f"BatchNorm: argument `momentum` must be in [0, 1), got {momentum!r}")

    def init(key, input_shape):
        check_rank("BatchNorm", "x", input_shape, tuple(range(2, 7)))
        channels = input_shape[-1]
        params = _affine_params(channels, use_scale, use_bias, scale_init, bias_init, param_dtype, key)
        state = BatchNormState(jnp.zeros((channels,), param_dtype), jnp.ones((channels,), param_dtype))
        return tuple(input_shape), params, state

    def apply(params, state, x, *, key=None, train=False):
        if x.shape[-1] != state.mean.shape[0]:
            raise LayerConfigError(
                f"BatchNorm: argument `x` has {x.shape[-1]} channels (x.shape={x.shape}) but the "
                f"layer was initialised for {state.mean.shape[0]}"
            )
        if not train:
            return _normalize(x, state.mean, state.var, epsilon, params), state
        axes = tuple(range(x.ndim - 1))
        mean = jnp.mean(x, axis=axes)
        var = jnp.mean(jnp.square(x - lax.broadcast_to_rank(mean, x.ndim)), axis=axes)
        batch = jax.tree.map(lambda v: lax.stop_gradient(v).astype(param_dtype), BatchNormState(mean, var))
        new_state = jax.tree.map(lambda old, new: momentum * old + (1.0 - momentum) * new, state, batch)
        return _normalize(x, mean, var, epsilon, params), new_state

    return Layer(init, apply)


def LayerNorm(
    epsilon: float = 1e-5,
    use_scale: bool = True,
    use_bias: bool = True,
    scale_init: Initializer = jax.nn.initializers.ones,
    bias_init: Initializer = jax.nn.initializers.zeros,
    *,
    param_dtype: jnp.dtype = jnp.float32,
) -> Layer:
    """Layer normalisation over the last axis of each example (as Flax's ``LayerNorm``)."""

    def init(key, input_shape):
        check_rank("LayerNorm", "x", input_shape, tuple(range(2, 7)))
        params = _affine_params(input_shape[-1], use_scale, use_bias, scale_init, bias_init, param_dtype, key)
        return tuple(input_shape), params, ()

    def apply(params, state, x, *, key=None, train=False):
        _check_width("LayerNorm", x.shape, params)
        mean = jnp.mean(x, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
        return _normalize(x, mean, var, epsilon, params), state

    return Layer(init, apply)


def GroupNorm(
    num_groups: int = 32,
    epsilon: float = 1e-5,
    use_scale: bool = True,
    use_bias: bool = True,
    scale_init: Initializer = jax.nn.initializers.ones,
    bias_init: Initializer = jax.nn.initializers.zeros,
    *,
    param_dtype: jnp.dtype = jnp.float32,
) -> Layer:
    """Group normalisation: channels split into ``num_groups`` groups, each normalised
    over its channels and the spatial axes, per example (Wu and He, 2018)."""
    check_positive("GroupNorm", "num_groups", num_groups)

    def check(shape):
        check_rank("GroupNorm", "x", shape, tuple(range(2, 7)))
        if shape[-1] % num_groups:
            raise LayerConfigError(
                f"GroupNorm: argument `num_groups`={num_groups} does not divide the input's "
                f"{shape[-1]} channels (input shape {tuple(shape)})"
            )

    def init(key, input_shape):
        check(input_shape)
        params = _affine_params(input_shape[-1], use_scale, use_bias, scale_init, bias_init, param_dtype, key)
        return tuple(input_shape), params, ()

    def apply(params, state, x, *, key=None, train=False):
        check(x.shape)
        _check_width("GroupNorm", x.shape, params)
        grouped = jnp.reshape(x, (*x.shape[:-1], num_groups, x.shape[-1] // num_groups))
        axes = (*range(1, x.ndim - 1), x.ndim)
        mean = jnp.mean(grouped, axis=axes, keepdims=True)
        var = jnp.mean(jnp.square(grouped - mean), axis=axes, keepdims=True)
        normed = jnp.reshape((grouped - mean) * lax.rsqrt(var + jnp.asarray(epsilon, x.dtype)), x.shape)
        return _affine(normed, params), state

    return Layer(init, apply)
