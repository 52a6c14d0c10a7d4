"""Normalisation layers (channels last): ``BatchNorm``, ``LayerNorm``, ``RMSNorm``, ``GroupNorm``,
``InstanceNorm``.

Each computes ``y = scale * (x - mean) / sqrt(var + epsilon) + bias`` with the
mean and (biased) variance taken over different axes:

* BatchNorm: over the batch and spatial axes, per channel; running
  statistics for evaluation.
* LayerNorm: over the chosen feature axes (the last by default), per example;
  ``scale`` and ``bias`` have the shape of ``x`` along those axes.
* RMSNorm: as LayerNorm without centring: ``y = scale * x / sqrt(mean(x^2) + epsilon)``.
* GroupNorm: over the spatial axes and the channels of each group, per example.
* InstanceNorm: GroupNorm with one channel per group: over the spatial axes,
  per example and channel.

All but BatchNorm standardise with [`funcnn.ops.norm.standardize`][funcnn.ops.norm.standardize], whose
hand-written VJP (``grad="custom"``, the default) is faster than JAX's
autodiff of the same forward pass on CPU and as fast on GPU (figures in its
module); ``grad="autodiff"`` lets JAX differentiate the forward pass. The
learned ``scale`` and ``bias`` are elementwise and differentiated by JAX. The
statistics are computed in at least float32 (a ``bfloat16`` input keeps
float32 statistics); the output has the compute dtype.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from funcnn import checks
from funcnn.core import Layer, LayerConfigError, Shape
from funcnn.identity import make_layer
from funcnn.ops import norm as norm_ops

Initializer = Callable[..., jax.Array]

_RANKS = (2, 3, 4, 5, 6)


class BatchNormState(NamedTuple):
    """Running per-channel statistics of ``BatchNorm``, used in evaluation.

    Registered with ``jax.export`` (as ``funcnn.BatchNormState``), so a function taking or
    returning a model's state serialises; the process that deserialises it imports funcnn.

    Attributes:
      mean: the running mean per channel, shape ``(C,)``, in ``param_dtype`` (zeros at ``init``).
      var: the running biased variance per channel, shape ``(C,)``, in ``param_dtype`` (ones at ``init``).
    """

    mean: jax.Array
    var: jax.Array


jax.export.register_namedtuple_serialization(BatchNormState, serialized_name="funcnn.BatchNormState")


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


def affine_shapes(spec: Affine, features: Shape) -> dict[str, Shape]:
    """The one source of the ``scale`` and ``bias`` shapes (``features``: the input's sizes along the
    axes they span), for ``init`` and ``apply``'s check."""
    names = [n for n, used in (("scale", spec.use_scale), ("bias", spec.use_bias)) if used]
    return {name: tuple(features) for name in names}


def affine_params(spec: Affine, key: jax.Array, features: Shape) -> dict:
    """``scale`` and ``bias`` of shape ``features`` from their initialisers, in ``param_dtype``."""
    scale_key, bias_key = jax.random.split(key)
    inits = {"scale": (spec.scale_init, scale_key), "bias": (spec.bias_init, bias_key)}
    return {
        name: checks.initialised(
            spec.layer, f"{name}_init", inits[name][0], inits[name][1], shape, spec.param_dtype
        )
        for name, shape in affine_shapes(spec, features).items()
    }


def checked_input(spec: Affine, params, x, ranks: tuple[int, ...] = _RANKS) -> jax.Array:
    """``x`` in the compute dtype, its rank checked and the per-channel params checked against it."""
    x = checks.input_array(spec.layer, x, spec.dtype, fallback=spec.param_dtype)
    checks.check_rank(spec.layer, "x", x.shape, ranks)
    check_params(spec, params, x.shape, (x.ndim - 1,))
    return x


def check_params(spec: Affine, params, x_shape: Shape, axes: tuple[int, ...]) -> None:
    """``params`` hold ``scale`` and ``bias`` of the shape of ``x`` along ``axes`` (the features)."""
    features = tuple(x_shape[a] for a in axes)
    for name in affine_shapes(spec, features):
        if axes == (len(x_shape) - 1,):
            checks.check_width(spec.layer, x_shape, params, name, 0)
            continue
        shape = getattr(params.get(name) if isinstance(params, Mapping) else None, "shape", None)
        if shape is not None and tuple(shape) != features:
            raise LayerConfigError(
                f"{spec.layer}: argument `x` has shape {features} along the normalised axes {axes} "
                f"(x.shape={tuple(x_shape)}) but the layer was initialised for {tuple(shape)} "
                f"(`{name}` has shape {tuple(shape)})"
            )
    context = f"an input of shape {tuple(x_shape)}"
    checks.check_leaves(spec.layer, "params", affine_shapes(spec, features), params, context)


def parse_feature_axes(layer: str, axis) -> int | tuple[int, ...]:
    """A per-example normalisation's ``axis``: an int or a tuple of distinct ints, never the batch 0."""
    axis = checks.axes(layer, "axis", axis)
    entries = axis if isinstance(axis, tuple) else (axis,)
    if 0 in entries:
        raise LayerConfigError(
            f"{layer}: argument `axis` must not include the batch axis 0 (the statistics are per "
            f"example), got {axis}"
        )
    return axis


def feature_axes(layer: str, axis: int | tuple[int, ...], shape: Shape) -> tuple[int, ...]:
    """``axis`` resolved for an input of ``shape`` (non-negative, increasing), checked in range,
    distinct and clear of the batch axis."""
    axes = norm_ops.resolve_axes(layer, "axis", axis, shape)
    if 0 in axes:
        raise LayerConfigError(
            f"{layer}: argument `axis`={axis} includes the batch axis 0 of an input of shape "
            f"{tuple(shape)}; the statistics are per example"
        )
    return axes


def _normalize(x, mean, var, epsilon, params) -> jax.Array:
    """``scale * (x - mean) / sqrt(var + epsilon) + bias`` with per-channel statistics."""
    mean = lax.broadcast_to_rank(mean.astype(x.dtype), x.ndim)
    var = lax.broadcast_to_rank(var.astype(x.dtype), x.ndim)
    return _affine((x - mean) * lax.rsqrt(var + jnp.asarray(epsilon, x.dtype)), params, (x.ndim - 1,))


def _affine(y, params, axes: tuple[int, ...]) -> jax.Array:
    """``scale * y + bias`` for whichever of the two the layer learns, each spanning ``axes`` of ``y``."""
    if "scale" in params:
        y = y * lax.broadcast_in_dim(params["scale"].astype(y.dtype), y.shape, axes)
    if "bias" in params:
        y = y + lax.broadcast_in_dim(params["bias"].astype(y.dtype), y.shape, axes)
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

    The running variance follows the batch's biased variance
    ``mean((x - mean)^2)``, the one training normalises with (as Flax and
    Keras); PyTorch's ``running_var`` follows the unbiased one, larger by
    ``n / (n - 1)`` for ``n`` values per channel. Evaluation normalises with
    the stored value in both, so weights moved from PyTorch use its
    ``running_var`` as is and give PyTorch's test-time outputs; only further
    training moves it differently.

    The batch statistics are computed in at least float32 (a ``bfloat16``
    compute dtype keeps float32 statistics) and the running ones are kept in
    ``param_dtype``.

    **Several devices.** Under ``jit`` with the batch sharded over a mesh
    ([`funcnn.distributed`][funcnn.distributed]) the statistics are those of the global batch
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

    Shapes:
      Input ``(N, *spatial, C)``, channels last, rank 2 to 6 (0 to 4 spatial axes).
      Output the input's shape, in the computation dtype.

    Returns:
      The layer, an ``(init, apply)`` pair; ``init`` builds the params ``scale`` and ``bias`` (each only when
        learned), of shape ``(C,)`` in ``param_dtype``, and the state
        [`BatchNormState`][funcnn.layers.norm.BatchNormState] ``(mean, var)``; ``apply`` returns the state
        updated when ``train=True``, unchanged otherwise.

    Raises:
      LayerConfigError: at construction, when ``momentum`` is not a real number in ``[0, 1)``, ``epsilon`` is
        not a real number ``> 0``, ``use_scale`` or ``use_bias`` is not a bool, an initialiser is not
        callable, ``dtype`` or ``param_dtype`` is not a floating dtype JAX holds, or ``axis_name`` is not
        ``None``, a non-empty axis name or a non-empty tuple of them. At ``init`` and when ``apply`` is
        traced, when the input's rank is not 2 to 6. At ``init``, when an initialiser fails or returns no
        floating array of shape ``(C,)``. When ``apply`` is traced, when ``x`` is not a real array, its
        channels differ from those ``init`` was given, ``params`` do not hold the leaves and shapes ``init``
        builds, ``state`` is not a ``BatchNormState`` of two ``(C,)`` arrays, ``train`` is not a bool (a
        traced one included: make it static under ``jit``), or, in training, an ``axis_name`` is not bound
        there or there are fewer than 2 values per channel (over every device of ``axis_name``).
    """
    name = "BatchNorm"
    momentum = checks.real(name, "momentum", momentum, low=0.0, high=1.0, high_open=True)
    axis_name = checks.axis_name(name, axis_name)
    spec = parse_affine(name, epsilon, use_scale, use_bias, scale_init, bias_init, dtype, param_dtype)

    def init(key, input_shape):
        checks.check_rank(name, "x", input_shape, _RANKS)
        channels = input_shape[-1]
        zeros, ones = jnp.zeros((channels,), spec.param_dtype), jnp.ones((channels,), spec.param_dtype)
        return tuple(input_shape), affine_params(spec, key, (channels,)), BatchNormState(zeros, ones)

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
    axis: int | tuple[int, ...] = -1,
    dtype: jnp.dtype | None = None,
    param_dtype: jnp.dtype = jnp.float32,
    grad: str | None = None,
) -> Layer:
    """Layer normalisation over the feature axes ``axis`` of each example (Ba et al., 2016).

    ``y = scale * (x - mean) / sqrt(var + epsilon) + bias``, the mean and the
    biased variance over ``axis``. ``scale`` and ``bias`` have the shape of
    ``x`` along ``axis``, the axes taken in increasing order: ``(C,)`` for the
    default (as Flax's ``LayerNorm``), ``(H, W, C)`` for ``axis=(1, 2, 3)`` on
    NHWC (PyTorch's ``LayerNorm((C, H, W))`` on NCHW, Keras'
    ``LayerNormalization(axis=[1, 2, 3])``), ``(H, C)`` for ``axis=(3, 1)``.

    Args:
      epsilon: added to the variance, ``> 0``.
      use_scale: learn ``scale``.
      use_bias: learn ``bias``.
      scale_init: a ``jax.nn.initializers`` function for ``scale``.
      bias_init: a ``jax.nn.initializers`` function for ``bias``.
      axis: an axis or a tuple of distinct axes (negative from the end) to
        normalise over; never the batch axis 0.
      dtype: computation dtype; ``None`` keeps a floating input's dtype.
      param_dtype: dtype of the parameters.
      grad: ``"custom"`` (hand-written rules, forward and reverse mode), ``"custom_vjp"`` (reverse mode
        only) or ``"autodiff"``; ``None`` takes the mode in force ([`grad_mode`][funcnn.core.grad_mode]).

    Shapes:
      Input ``(N, ...)``, rank 2 to 6.
      Output the input's shape, in the computation dtype.

    Returns:
      The layer, an ``(init, apply)`` pair; ``init`` builds the params ``scale`` and ``bias`` (each only when
        learned), each of the input's shape along ``axis`` (axes in increasing order) in ``param_dtype``, and
        no state (``()``).

    Raises:
      LayerConfigError: at construction, when ``epsilon`` is not a real number ``> 0``, ``use_scale`` or
        ``use_bias`` is not a bool, an initialiser is not callable, ``dtype`` or ``param_dtype`` is not a
        floating dtype JAX holds, ``axis`` is not an int or a non-empty tuple of ints, repeats an axis or
        includes 0, or ``grad`` is not one of its values. At ``init`` and when ``apply`` is traced, when the
        input's rank is not 2 to 6, or ``axis`` is out of range for it, names an axis twice (e.g. ``1`` and
        ``-3`` of a rank-4 input) or names the batch axis (e.g. ``-4`` of a rank-4 input). At ``init``, when
        an initialiser fails or returns no floating array of the parameter's shape. When ``apply`` is traced,
        when ``x`` is not a real array, its sizes along ``axis`` differ from those ``init`` was given, or
        ``params`` do not hold the leaves and shapes ``init`` builds.
    """
    name = "LayerNorm"
    spec = parse_affine(name, epsilon, use_scale, use_bias, scale_init, bias_init, dtype, param_dtype)
    return _feature_norm(name, axis, True, grad, spec)


def RMSNorm(
    axis: int | tuple[int, ...] = -1,
    epsilon: float = 1e-6,
    use_scale: bool = True,
    scale_init: Initializer = jax.nn.initializers.ones,
    *,
    dtype: jnp.dtype | None = None,
    param_dtype: jnp.dtype = jnp.float32,
    grad: str | None = None,
) -> Layer:
    """Root-mean-square normalisation over ``axis`` of each example (Zhang and Sennrich, 2019).

    ``y = scale * x / sqrt(mean(x^2) + epsilon)``, the mean over ``axis``, as
    Flax's ``RMSNorm``, Keras' ``RMSNormalization`` and PyTorch's ``RMSNorm``
    with an explicit ``eps`` (PyTorch's default ``eps=None`` means the dtype's
    machine epsilon; funcnn's default is Flax's and Keras' ``1e-6``).
    ``scale`` has the shape of ``x`` along ``axis`` (as [`LayerNorm`][funcnn.layers.norm.LayerNorm]).

    Args:
      axis: an axis or a tuple of distinct axes (negative from the end) to
        normalise over; never the batch axis 0.
      epsilon: added to the mean square, ``> 0``.
      use_scale: learn ``scale``.
      scale_init: a ``jax.nn.initializers`` function for ``scale``.
      dtype: computation dtype; ``None`` keeps a floating input's dtype.
      param_dtype: dtype of the parameters.
      grad: ``"custom"`` (hand-written rules, forward and reverse mode), ``"custom_vjp"`` (reverse mode
        only) or ``"autodiff"``; ``None`` takes the mode in force ([`grad_mode`][funcnn.core.grad_mode]).

    Shapes:
      Input ``(N, ...)``, rank 2 to 6.
      Output the input's shape, in the computation dtype.

    Returns:
      The layer, an ``(init, apply)`` pair; ``init`` builds the param ``scale`` (only when learned), of the
        input's shape along ``axis`` (axes in increasing order) in ``param_dtype``, and no state (``()``).

    Raises:
      LayerConfigError: at construction, when ``epsilon`` is not a real number ``> 0``, ``use_scale`` is not a
        bool, ``scale_init`` is not callable, ``dtype`` or ``param_dtype`` is not a floating dtype JAX holds,
        ``axis`` is not an int or a non-empty tuple of ints, repeats an axis or includes 0, or ``grad`` is not
        one of its values. At ``init`` and when ``apply`` is traced, when the input's rank is not 2 to 6, or
        ``axis`` is out of range for it, names an axis twice (e.g. ``1`` and ``-3`` of a rank-4 input) or
        names the batch axis (e.g. ``-4`` of a rank-4 input). At ``init``, when an initialiser fails or
        returns no floating array of the parameter's shape. When ``apply`` is traced, when ``x`` is not a real
        array, its sizes along ``axis`` differ from those ``init`` was given, or ``params`` do not hold the
        leaves and shapes ``init`` builds.
    """
    name = "RMSNorm"
    spec = parse_affine(
        name, epsilon, use_scale, False, scale_init, jax.nn.initializers.zeros, dtype, param_dtype
    )
    return _feature_norm(name, axis, False, grad, spec)


def _feature_norm(name: str, axis, center: bool, grad, spec: Affine) -> Layer:
    """LayerNorm (``center``) or RMSNorm over the feature axes ``axis`` of each example."""
    axis = parse_feature_axes(name, axis)
    grad = checks.grad_mode(name, grad)

    def init(key, input_shape):
        checks.check_rank(name, "x", input_shape, _RANKS)
        axes = feature_axes(name, axis, input_shape)
        return tuple(input_shape), affine_params(spec, key, tuple(input_shape[a] for a in axes)), ()

    def apply(params, state, x, *, key=None, train=False):
        x = checks.input_array(name, x, spec.dtype, fallback=spec.param_dtype)
        checks.check_rank(name, "x", x.shape, _RANKS)
        axes = feature_axes(name, axis, x.shape)
        check_params(spec, params, x.shape, axes)
        config = norm_ops.NormConfig(axes, spec.epsilon, center)
        return _affine(norm_ops.apply_standardize(config, x, grad), params, axes), state

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
    grad: str | None = None,
) -> Layer:
    """Group normalisation: channels split into ``num_groups`` groups, each normalised
    over its channels and the spatial axes, per example (Wu and He, 2018).

    Args:
      num_groups: the number of groups; it divides the input's channels.
      epsilon: added to the variance, ``> 0``.
      use_scale: learn a ``scale`` per channel.
      use_bias: learn a ``bias`` per channel.
      scale_init: a ``jax.nn.initializers`` function for ``scale``.
      bias_init: a ``jax.nn.initializers`` function for ``bias``.
      dtype: computation dtype; ``None`` keeps a floating input's dtype.
      param_dtype: dtype of the parameters.
      grad: ``"custom"`` (hand-written rules, forward and reverse mode), ``"custom_vjp"`` (reverse mode
        only) or ``"autodiff"``; ``None`` takes the mode in force ([`grad_mode`][funcnn.core.grad_mode]).

    Shapes:
      Input ``(N, *spatial, C)``, channels last, rank 2 to 6 (0 to 4 spatial axes), ``C`` a multiple of
        ``num_groups``.
      Output the input's shape, in the computation dtype.

    Returns:
      The layer, an ``(init, apply)`` pair; ``init`` builds the params ``scale`` and ``bias`` (each only when
        learned), of shape ``(C,)`` in ``param_dtype``, and no state (``()``).

    Raises:
      LayerConfigError: at construction, when ``num_groups`` is not a positive int, ``epsilon`` is not a real
        number ``> 0``, ``use_scale`` or ``use_bias`` is not a bool, an initialiser is not callable, ``dtype``
        or ``param_dtype`` is not a floating dtype JAX holds, or ``grad`` is not one of its values. At
        ``init`` and when ``apply`` is traced, when the input's rank is not 2 to 6 or ``num_groups`` does not
        divide its channels. At ``init``, when an initialiser fails or returns no floating array of shape
        ``(C,)``. When ``apply`` is traced, when ``x`` is not a real array, its channels differ from those
        ``init`` was given, or ``params`` do not hold the leaves and shapes ``init`` builds.
    """
    name = "GroupNorm"
    num_groups = checks.positive_int(name, "num_groups", num_groups)
    spec = parse_affine(name, epsilon, use_scale, use_bias, scale_init, bias_init, dtype, param_dtype)

    def check_groups(shape):
        checks.check_rank(name, "x", shape, _RANKS)
        checks.check_divides(
            name, "num_groups", num_groups, "the input's channels", shape[-1], f"input shape {tuple(shape)}"
        )
        return num_groups

    return _grouped_norm(spec, grad, check_groups, _RANKS)


def InstanceNorm(
    epsilon: float = 1e-5,
    use_scale: bool = True,
    use_bias: bool = True,
    scale_init: Initializer = jax.nn.initializers.ones,
    bias_init: Initializer = jax.nn.initializers.zeros,
    *,
    dtype: jnp.dtype | None = None,
    param_dtype: jnp.dtype = jnp.float32,
    grad: str | None = None,
) -> Layer:
    """Instance normalisation: each channel of each example normalised over the spatial axes
    (Ulyanov et al., 2016); [`GroupNorm`][funcnn.layers.norm.GroupNorm] with one channel per group.

    Equals PyTorch's ``InstanceNorm1d/2d/3d(affine=True, track_running_stats=False)``
    (funcnn learns ``scale`` and ``bias`` by default, as Flax's
    ``InstanceNorm``; PyTorch's default ``affine=False`` is
    ``use_scale=False, use_bias=False``). As PyTorch, it needs more than one
    spatial element: the statistics of one value would make the output ``bias``.

    Args:
      epsilon: added to the variance, ``> 0``.
      use_scale: learn a ``scale`` per channel.
      use_bias: learn a ``bias`` per channel.
      scale_init: a ``jax.nn.initializers`` function for ``scale``.
      bias_init: a ``jax.nn.initializers`` function for ``bias``.
      dtype: computation dtype; ``None`` keeps a floating input's dtype.
      param_dtype: dtype of the parameters.
      grad: ``"custom"`` (hand-written rules, forward and reverse mode), ``"custom_vjp"`` (reverse mode
        only) or ``"autodiff"``; ``None`` takes the mode in force ([`grad_mode`][funcnn.core.grad_mode]).

    Shapes:
      Input ``(N, *spatial, C)``, channels last, rank 3 to 6 (1 to 4 spatial axes) with at least 2 spatial
        positions.
      Output the input's shape, in the computation dtype.

    Returns:
      The layer, an ``(init, apply)`` pair; ``init`` builds the params ``scale`` and ``bias`` (each only when
        learned), of shape ``(C,)`` in ``param_dtype``, and no state (``()``).

    Raises:
      LayerConfigError: at construction, when ``epsilon`` is not a real number ``> 0``, ``use_scale`` or
        ``use_bias`` is not a bool, an initialiser is not callable, ``dtype`` or ``param_dtype`` is not a
        floating dtype JAX holds, or ``grad`` is not one of its values. At ``init`` and when ``apply`` is
        traced, when the input's rank is not 3 to 6 or it has fewer than 2 spatial positions. At ``init``,
        when an initialiser fails or returns no floating array of shape ``(C,)``. When ``apply`` is traced,
        when ``x`` is not a real array, its channels differ from those ``init`` was given, or ``params`` do
        not hold the leaves and shapes ``init`` builds.
    """
    name = "InstanceNorm"
    spec = parse_affine(name, epsilon, use_scale, use_bias, scale_init, bias_init, dtype, param_dtype)
    ranks = _RANKS[1:]

    def one_per_channel(shape):
        checks.check_rank(name, "x", shape, ranks)
        count = math.prod(shape[1:-1])
        if count < 2:
            raise LayerConfigError(
                f"{name}: argument `x` of shape {tuple(shape)} has {count} spatial value(s) per channel; "
                "instance statistics need at least 2 (with 1 the output would be `bias`, whatever x is)"
            )
        return shape[-1]

    return _grouped_norm(spec, grad, one_per_channel, ranks)


def _grouped_norm(spec: Affine, grad, groups: Callable[[Shape], int], ranks: tuple[int, ...]) -> Layer:
    """GroupNorm and InstanceNorm: ``groups(shape)`` checks an input shape and returns its number
    of groups; each group's channels and the spatial axes are normalised together, per example."""
    name = spec.layer
    grad = checks.grad_mode(name, grad)

    def init(key, input_shape):
        groups(input_shape)
        return tuple(input_shape), affine_params(spec, key, (input_shape[-1],)), ()

    def apply(params, state, x, *, key=None, train=False):
        x = checked_input(spec, params, x, ranks)
        num_groups = groups(x.shape)
        grouped = jnp.reshape(x, (*x.shape[:-1], num_groups, x.shape[-1] // num_groups))
        config = norm_ops.NormConfig((*range(1, x.ndim - 1), x.ndim), spec.epsilon, True)
        normed = jnp.reshape(norm_ops.apply_standardize(config, grouped, grad), x.shape)
        return _affine(normed, params, (x.ndim - 1,)), state

    return make_layer(name, init, apply)
