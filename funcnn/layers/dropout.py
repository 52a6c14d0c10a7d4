"""``Dropout(rate)``: in training, zero each input with probability ``rate``; ``SpatialDropout``:
zero whole channels.

Both are inverted dropout, ``y = x * m / (1 - rate)`` with ``m ~ Bernoulli(1 - rate)``;
``broadcast_dims`` shares one draw of ``m`` along the axes it names (Flax's
argument): the mask has size 1 there, e.g. ``(N, 1, 1, C)`` for
``broadcast_dims=(1, 2)`` on NHWC, which drops whole channels of each image.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

from funcnn import checks
from funcnn.core import Layer, LayerConfigError, Shape
from funcnn.identity import make_layer


def Dropout(
    rate: float, *, broadcast_dims: int | Sequence[int] = (), dtype: jnp.dtype | None = None
) -> Layer:
    """Inverted dropout: ``y = x * m / (1 - rate)`` with ``m ~ Bernoulli(1 - rate)``.

    ``rate`` is the probability of dropping (zeroing) an input, as in PyTorch
    and Flax (not stax's keep probability), any real scalar in ``[0, 1)``.
    Outside training it is the identity (integer inputs still become
    floating, as everywhere). In training it needs ``apply(..., key=key, train=True)``.

    Args:
      rate: the probability of dropping an input, in ``[0, 1)``.
      broadcast_dims: the axes (negative from the end) along which one mask
        value is shared, as Flax's ``Dropout``: ``(1, 2)`` on NHWC keeps or
        drops each channel of each image whole (see [`SpatialDropout`][funcnn.layers.dropout.SpatialDropout]),
        ``(0,)`` draws one mask for the whole batch. ``()`` (default) draws
        each element independently.
      dtype: computation dtype; ``None`` keeps a floating input's dtype.

    Shapes:
      Input any shape, of any rank (``init`` needs the batch axis) with every ``broadcast_dims`` axis in it.
      Output the input's shape, in the computation dtype (integer and bool inputs in the default float);
      the mask has the input's shape with size 1 along ``broadcast_dims``.

    Returns:
      The layer, an ``(init, apply)`` pair with no parameters and no state (``init`` gives ``()`` for both).
        Its ``apply(params, state, x, key=..., train=...)`` is the identity unless ``train=True`` and
        ``rate > 0``; then it needs ``key``, one PRNG key, and draws a fresh mask from it.

    Raises:
      LayerConfigError: at construction, when ``rate`` is not a real number in ``[0, 1)``,
        ``broadcast_dims`` is not an integer or a tuple (or list) of integers or repeats an entry, or
        ``dtype`` is not a floating dtype JAX holds; at ``init``, when ``key`` is not a PRNG key,
        ``input_shape`` is not a shape of positive sizes (the batch may be ``-1``), or an axis of
        ``broadcast_dims`` is out of range for its rank or two entries name one axis (``1`` and ``-3`` on
        rank 4); when ``apply`` is traced, for the same ``broadcast_dims`` check on ``x``, when ``train``
        is not a Python or NumPy bool (a traced one too: under ``jax.jit`` make it static), when
        ``train=True`` and ``rate > 0`` but ``key`` is ``None`` or not one PRNG key (``jax.random.key``
        or a legacy ``PRNGKey``), when ``params`` is not empty, or when ``x`` is complex, non-numeric, or
        a list or tuple rather than an array.
    """
    name = "Dropout"
    rate, dtype = _parse(name, rate, dtype)
    empty = isinstance(broadcast_dims, (tuple, list)) and not broadcast_dims
    dims = () if empty else checks.axes(name, "broadcast_dims", broadcast_dims)
    entries = dims if isinstance(dims, tuple) else (dims,)

    def shared_axes(shape: Shape) -> tuple[int, ...]:
        if entries:
            checks.axis_in_range(name, "broadcast_dims", dims, shape)
        return tuple(a % len(shape) for a in entries)

    return _dropout(name, rate, dtype, shared_axes)


def SpatialDropout(rate: float, *, dtype: jnp.dtype | None = None) -> Layer:
    """Dropout of whole channels: each channel of each example kept (scaled by ``1 / (1 - rate)``)
    or zeroed, with probability ``rate``, for 1-D to 3-D inputs ``(N, *spatial, C)``.

    [`Dropout`][funcnn.layers.dropout.Dropout] with ``broadcast_dims`` every spatial axis: the mask has
    shape ``(N, 1, ..., 1, C)``. As Keras' ``SpatialDropout1D/2D/3D`` and
    PyTorch's ``Dropout1d/2d/3d`` (channels first there); neighbouring pixels
    of a feature map are strongly correlated, so dropping single pixels
    regularises convolutions little (Tompson et al., 2015).

    Args:
      rate: the probability of dropping a channel, in ``[0, 1)``.
      dtype: computation dtype; ``None`` keeps a floating input's dtype.

    Shapes:
      Input ``(N, *spatial, C)``, channels last, 1 to 3 spatial axes (rank 3 to 5).
      Output the input's shape, in the computation dtype (integer and bool inputs in the default float);
      the mask has shape ``(N, 1, ..., 1, C)``.

    Returns:
      The layer, an ``(init, apply)`` pair with no parameters and no state (``init`` gives ``()`` for both).
        Its ``apply(params, state, x, key=..., train=...)`` is the identity unless ``train=True`` and
        ``rate > 0``; then it needs ``key``, one PRNG key, and draws a fresh mask from it.

    Raises:
      LayerConfigError: at construction, when ``rate`` is not a real number in ``[0, 1)`` or ``dtype`` is
        not a floating dtype JAX holds; at ``init``, when ``key`` is not a PRNG key or ``input_shape`` is
        not a shape of positive sizes (the batch may be ``-1``) or its rank is not 3 to 5; when ``apply`` is
        traced, when ``x``'s rank is not 3 to 5, when ``train`` is not a Python or NumPy bool (a traced one
        too: under ``jax.jit`` make it static), when ``train=True`` and ``rate > 0`` but ``key`` is
        ``None`` or not one PRNG key (``jax.random.key`` or a legacy ``PRNGKey``), when ``params`` is not
        empty, or when ``x`` is complex, non-numeric, or a list or tuple rather than an array.
    """
    name = "SpatialDropout"
    rate, dtype = _parse(name, rate, dtype)

    def spatial_axes(shape: Shape) -> tuple[int, ...]:
        checks.check_rank(name, "x", shape, (3, 4, 5))
        return tuple(range(1, len(shape) - 1))

    return _dropout(name, rate, dtype, spatial_axes)


def _parse(name: str, rate, dtype) -> tuple[float, jnp.dtype | None]:
    """``rate`` in ``[0, 1)`` and ``dtype``, checked."""
    return (
        checks.real(name, "rate", rate, low=0.0, high=1.0, high_open=True),
        checks.dtype_or_none(name, "dtype", dtype),
    )


def _dropout(
    name: str, rate: float, dtype: jnp.dtype | None, shared_axes: Callable[[Shape], tuple[int, ...]]
) -> Layer:
    """Inverted dropout whose mask has size 1 along ``shared_axes(x.shape)`` (which checks the shape)."""

    def init(key, input_shape):
        shared_axes(input_shape)
        return tuple(input_shape), (), ()

    def apply(params, state, x, *, key=None, train=False):
        checks.no_params(name, params)
        x = checks.input_array(name, x, dtype)
        shared = shared_axes(x.shape)
        if not checks.boolean(name, "train", train) or rate == 0.0:
            return x, state
        if key is None:
            raise LayerConfigError(
                f"{name}: argument `key` is required when train=True (rate={rate}, x.shape={x.shape}); "
                "pass apply(..., key=jax.random.key(...), train=True)"
            )
        checks.check_key(name, key)
        mask_shape = tuple(1 if axis in shared else n for axis, n in enumerate(x.shape))
        keep = jax.random.bernoulli(key, 1.0 - rate, mask_shape)
        return jnp.where(keep, x / jnp.asarray(1.0 - rate, x.dtype), jnp.zeros((), x.dtype)), state

    return make_layer(name, init, apply)
