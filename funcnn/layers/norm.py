"""Normalisation layers: ``BatchNorm``, ``LayerNorm``, ``GroupNorm`` (channels last).

Each computes ``y = scale * (x - mean) / sqrt(var + epsilon) + bias`` with the
mean and (biased) variance taken over different axes:

* BatchNorm: over the batch and spatial axes, per channel; running
  statistics for evaluation.
* LayerNorm: over the last axis, per example.
* GroupNorm: over the spatial axes and the channels of each group, per example.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from funcnn import checks
from funcnn.core import Layer, LayerConfigError, Shape
from funcnn.identity import make_layer

Initializer = Callable[..., jax.Array]

_RANKS = (2, 3, 4, 5, 6)


class BatchNormState(NamedTuple):
    """Running per-channel statistics of ``BatchNorm``, used in evaluation."""

    mean: jax.Array
    var: jax.Array


class Affine(NamedTuple):
    """The parsed arguments every normalisation layer shares."""

    layer: str
    epsilon: float
    use_scale: bool
    use_bias: bool
    scale_init: Initializer
    bias_init: Initializer
    dtype: jnp.dtype | None
    param_dtype: jnp.dtype


def parse_affine(
    layer: str, epsilon, use_scale, use_bias, scale_init, bias_init, dtype, param_dtype
) -> Affine:
    """Check the arguments shared by the normalisation layers; ``epsilon > 0``."""
    return Affine(
        layer,
        checks.real(layer, "epsilon", epsilon, low=0.0, low_open=True),
        checks.boolean(layer, "use_scale", use_scale),
        checks.boolean(layer, "use_bias", use_bias),
        checks.initializer(layer, "scale_init", scale_init),
        checks.initializer(layer, "bias_init", bias_init),
        checks.dtype_or_none(layer, "dtype", dtype),
        checks.dtype_or_none(layer, "param_dtype", param_dtype) or jnp.dtype(jnp.float32),
    )


def affine_shapes(spec: Affine, channels: int) -> dict[str, Shape]:
    """The one source of the ``scale`` and ``bias`` shapes, for ``init`` and ``apply``'s check."""
    names = [n for n, used in (("scale", spec.use_scale), ("bias", spec.use_bias)) if used]
    return {name: (channels,) for name in names}


def affine_params(spec: Affine, key: jax.Array, channels: int) -> dict:
    """``scale`` and ``bias`` from their initialisers, in ``param_dtype``."""
    scale_key, bias_key = jax.random.split(key)
    inits = {"scale": (spec.scale_init, scale_key), "bias": (spec.bias_init, bias_key)}
    return {
        name: checks.initialised(
            spec.layer, f"{name}_init", inits[name][0], inits[name][1], shape, spec.param_dtype
        )
        for name, shape in affine_shapes(spec, channels).items()
    }


def checked_input(spec: Affine, params, x) -> jax.Array:
    """``x`` in the compute dtype, its rank checked and the params checked against it."""
    x = checks.input_array(spec.layer, x, spec.dtype, fallback=spec.param_dtype)
    checks.check_rank(spec.layer, "x", x.shape, _RANKS)
    for name in affine_shapes(spec, x.shape[-1]):
        checks.check_width(spec.layer, x.shape, params, name, 0)
    context = f"an input of shape {tuple(x.shape)}"
    checks.check_leaves(spec.layer, "params", affine_shapes(spec, x.shape[-1]), params, context)
    return x


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
    dtype: jnp.dtype | None = None,
    param_dtype: jnp.dtype = jnp.float32,
    axis_name: str | tuple[str, ...] | None = None,
) -> Layer:
    """Batch normalisation over every axis but the channels (the last).

    In training (``train=True``) it normalises with the batch's statistics and
    returns the running statistics moved towards them:
    ``running = momentum * running + (1 - momentum) * batch``. In evaluation
    it normalises with the running statistics and returns the state
    unchanged, so evaluation is deterministic. Training needs more than one
    value per channel (as PyTorch): the variance of one value is 0.

    The batch statistics are computed in at least float32 (a ``bfloat16``
    compute dtype keeps float32 statistics) and the running ones are kept in
    ``param_dtype``.

    **Several devices.** Under ``jit`` with the batch sharded over a mesh
    (:mod:`funcnn.distributed`) the statistics are those of the global batch
    already: XLA reduces across devices. Inside ``shard_map``, where each
    device sees only its rows, pass the mesh axis the batch is split over as
    ``axis_name`` (as Flax and Equinox do): with equal shards,
    ``mean = pmean(mean_local)`` and ``var = pmean(mean_local((x - mean)^2))``
    are the global batch's, and the running statistics stay identical on
    every device.

    Args:
      momentum: decay of the running statistics, in ``[0, 1)``.
      epsilon: added to the variance, ``> 0``.
      use_scale: learn a ``scale`` per channel.
      use_bias: learn a ``bias`` per channel.
      scale_init: a ``jax.nn.initializers`` function for ``scale``.
      bias_init: a ``jax.nn.initializers`` function for ``bias``.
      dtype: computation dtype; ``None`` keeps a floating input's dtype.
      param_dtype: dtype of the parameters and running statistics.
      axis_name: inside ``shard_map``, the mesh axis (or axes) the batch is
        split over; ``None`` for statistics over the array as given.
    """
    name = "BatchNorm"
    momentum = checks.real(name, "momentum", momentum, low=0.0, high=1.0, high_open=True)
    axis_name = checks.axis_name(name, axis_name)
    spec = parse_affine(name, epsilon, use_scale, use_bias, scale_init, bias_init, dtype, param_dtype)

    def init(key, input_shape):
        checks.check_rank(name, "x", input_shape, _RANKS)
        channels = input_shape[-1]
        zeros, ones = jnp.zeros((channels,), spec.param_dtype), jnp.ones((channels,), spec.param_dtype)
        return tuple(input_shape), affine_params(spec, key, channels), BatchNormState(zeros, ones)

    def apply(params, state, x, *, key=None, train=False):
        x = checked_input(spec, params, x)
        channels = x.shape[-1]
        if not isinstance(state, BatchNormState):
            raise LayerConfigError(
                f"BatchNorm: argument `state` must be the BatchNormState(mean, var) that init returns, "
                f"each of shape ({channels},) for an input of shape {tuple(x.shape)}, "
                f"got {type(state).__name__}"
            )
        checks.check_leaves(
            name,
            "state",
            {"mean": (channels,), "var": (channels,)},
            state,
            f"an input of shape {tuple(x.shape)}",
        )
        if not checks.boolean(name, "train", train):
            return _normalize(x, state.mean, state.var, spec.epsilon, params), state
        count = math.prod(x.shape[:-1])
        for axis in () if axis_name is None else axis_name if isinstance(axis_name, tuple) else (axis_name,):
            checks.check_axis_bound(name, axis)
            count *= jax.lax.axis_size(axis)  # inside shard_map the statistics span every device's rows
        if count < 2:
            raise LayerConfigError(
                f"BatchNorm: argument `x` of shape {tuple(x.shape)} has {count} value(s) per channel; "
                "training needs at least 2 (batch statistics of fewer are undefined or zero)"
            )
        mean, var = _batch_statistics(x, axis_name)
        batch = jax.tree.map(
            lambda v: lax.stop_gradient(v).astype(spec.param_dtype), BatchNormState(mean, var)
        )
        new_state = jax.tree.map(lambda old, new: momentum * old + (1.0 - momentum) * new, state, batch)
        return _normalize(x, mean, var, spec.epsilon, params), new_state

    return make_layer(name, init, apply)


def _batch_statistics(x: jax.Array, axis_name: str | tuple[str, ...] | None) -> tuple[jax.Array, jax.Array]:
    """Per-channel ``mean`` and biased ``var`` over every other axis (and over ``axis_name``'s devices),
    in at least float32."""
    stats = x.astype(checks.common_dtype([x.dtype, jnp.float32]))
    axes = tuple(range(x.ndim - 1))
    mean = jnp.mean(stats, axis=axes)
    if axis_name is not None:
        mean = lax.pmean(mean, axis_name)
    var = jnp.mean(jnp.square(stats - lax.broadcast_to_rank(mean, x.ndim)), axis=axes)
    if axis_name is not None:
        var = lax.pmean(var, axis_name)
    return mean, var


def LayerNorm(
    epsilon: float = 1e-5,
    use_scale: bool = True,
    use_bias: bool = True,
    scale_init: Initializer = jax.nn.initializers.ones,
    bias_init: Initializer = jax.nn.initializers.zeros,
    *,
    dtype: jnp.dtype | None = None,
    param_dtype: jnp.dtype = jnp.float32,
) -> Layer:
    """Layer normalisation over the last axis of each example (as Flax's ``LayerNorm``)."""
    name = "LayerNorm"
    spec = parse_affine(name, epsilon, use_scale, use_bias, scale_init, bias_init, dtype, param_dtype)

    def init(key, input_shape):
        checks.check_rank(name, "x", input_shape, _RANKS)
        return tuple(input_shape), affine_params(spec, key, input_shape[-1]), ()

    def apply(params, state, x, *, key=None, train=False):
        x = checked_input(spec, params, x)
        mean = jnp.mean(x, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
        return _normalize(x, mean, var, spec.epsilon, params), state

    return make_layer(name, init, apply)


def GroupNorm(
    num_groups: int = 32,
    epsilon: float = 1e-5,
    use_scale: bool = True,
    use_bias: bool = True,
    scale_init: Initializer = jax.nn.initializers.ones,
    bias_init: Initializer = jax.nn.initializers.zeros,
    *,
    dtype: jnp.dtype | None = None,
    param_dtype: jnp.dtype = jnp.float32,
) -> Layer:
    """Group normalisation: channels split into ``num_groups`` groups, each normalised
    over its channels and the spatial axes, per example (Wu and He, 2018)."""
    name = "GroupNorm"
    num_groups = checks.positive_int(name, "num_groups", num_groups)
    spec = parse_affine(name, epsilon, use_scale, use_bias, scale_init, bias_init, dtype, param_dtype)

    def check_groups(shape):
        checks.check_rank(name, "x", shape, _RANKS)
        checks.check_divides(
            name, "num_groups", num_groups, "the input's channels", shape[-1], f"input shape {tuple(shape)}"
        )

    def init(key, input_shape):
        check_groups(input_shape)
        return tuple(input_shape), affine_params(spec, key, input_shape[-1]), ()

    def apply(params, state, x, *, key=None, train=False):
        x = checked_input(spec, params, x)
        check_groups(x.shape)
        grouped = jnp.reshape(x, (*x.shape[:-1], num_groups, x.shape[-1] // num_groups))
        axes = (*range(1, x.ndim - 1), x.ndim)
        mean = jnp.mean(grouped, axis=axes, keepdims=True)
        var = jnp.mean(jnp.square(grouped - mean), axis=axes, keepdims=True)
        normed = jnp.reshape((grouped - mean) * lax.rsqrt(var + jnp.asarray(spec.epsilon, x.dtype)), x.shape)
        return _affine(normed, params), state

    return make_layer(name, init, apply)
