"""Max and average pooling over the spatial axes (channels last), with hand-written VJPs.

``x`` is ``(N, *spatial, C)``; windows slide over the spatial axes only::

    max_pool:  Y[n, o, c] = max_{k in window} X[n, s o + k - lo, c]      (padding never wins)
    avg_pool:  Y[n, o, c] = (1 / count) sum_{k in window} X[n, s o + k - lo, c]

where ``count`` is the window size (``count_include_pad=True``) or the number
of window positions that fall inside the unpadded input.

Backward (``G = dL/dY``; derivations in ``docs/course/backward_pool.md``)::

    max_pool:  dL/dX[i] = sum_{o : s o + k*(o) - lo = i} G[o]
               k*(o) = the first k in scan order with X_pad[s o + k] = Y[o]
    avg_pool:  dL/dX[i] = sum_{o : 0 <= i + lo - s o < f} G[o] / count[o]

The rules treat every axis alike: the batch and channel axes are axes with
window 1, stride 1 and no padding.
"""

from __future__ import annotations

import functools
import itertools
import math
import operator
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from funcnn import checks, shapes
from funcnn.core import LayerConfigError
from funcnn.ops._grad import cotangents_like, select
from funcnn.shapes import pool_output_size


class PoolArgs(NamedTuple):
    """A pooling op's arguments, parsed and checked without shapes (at a layer's construction)."""

    window: int | tuple[int, ...]
    strides: int | tuple[int, ...] | None
    padding: checks.PaddingSpec


class PoolConfig(NamedTuple):
    """A resolved pooling op over all axes ``(N, *spatial, C)`` (hashable, the VJP's static
    argument), and the output's spatial sizes."""

    window: tuple[int, ...]
    strides: tuple[int, ...]
    padding: tuple[tuple[int, int], ...]
    out_spatial: tuple[int, ...]


def pool_args(
    op: str,
    window: int | Sequence[int],
    strides: int | Sequence[int] | None = None,
    padding: checks.Padding = "VALID",
) -> PoolArgs:
    """Parse a pooling op's arguments.

    Explicit padding must be non-negative and at most half the window on each
    side (PyTorch's rule): a window that could lie wholly in the padding would
    give ``-inf`` (max) or a mean of padding.
    """
    window = checks.sizes(op, "window", window)
    strides = None if strides is None else checks.sizes(op, "strides", strides)
    padding = checks.padding_spec(op, padding, allow_negative=False)
    if isinstance(padding, int):
        windows = window if isinstance(window, tuple) else (window,)
        pairs = ((padding, padding),) * len(windows)
    elif isinstance(padding, tuple):
        sizes = checks.per_axis(op, window=window, padding=tuple(lo for lo, _ in padding))
        windows, pairs = sizes["window"], padding
    else:
        windows, pairs = (), ()
    if any(max(lo, hi) > f // 2 for f, (lo, hi) in zip(windows, pairs)):
        raise LayerConfigError(
            f"{op}: argument `padding` {padding} must be at most half the window {window} on each side"
        )
    return PoolArgs(window, strides, padding)


def resolve_pool(op: str, args: PoolArgs, x_shape: Sequence[int]) -> PoolConfig:
    """Resolve parsed ``args`` for an input of shape ``x_shape``: windows, strides and pads
    over all axes, and the output sizes; ``strides`` defaults to the window."""
    if len(x_shape) < 3:
        raise LayerConfigError(
            f"{op}: argument `x` must have rank >= 3 (batch, spatial..., channels), "
            f"but has shape {tuple(x_shape)}"
        )
    rank = len(x_shape) - 2
    if any(n < 1 for n in x_shape[1:-1]):
        raise LayerConfigError(f"{op}: argument `x` has an empty spatial axis: shape {tuple(x_shape)}")
    window = checks.broadcast(op, "window", args.window, rank)
    strides = window if args.strides is None else checks.broadcast(op, "strides", args.strides, rank)
    spatial = tuple(x_shape[1:-1])
    pads = shapes.padding_pairs(op, args.padding, spatial, window, strides, (1,) * rank)
    out = tuple(pool_output_size(n, f, s, p) for n, f, s, p in zip(spatial, window, strides, pads))
    if any(o < 1 for o in out):
        raise LayerConfigError(
            f"{op}: argument `window` {window} is larger than the padded input "
            f"(input spatial shape {spatial}, padding {pads})"
        )
    return PoolConfig((1, *window, 1), (1, *strides, 1), ((0, 0), *pads, (0, 0)), out)


# The initial values of ``lax.reduce_window`` are NumPy scalars: a concrete ``0`` or
# ``-inf`` lets JAX recognise the monoid and emit ``reduce_window_sum`` /
# ``reduce_window_max``, which autodiff understands; a ``jnp`` scalar is traced
# under ``jit`` and ``grad`` and yields the generic ``reduce_window``, which
# reverse mode cannot differentiate.


def max_identity(dtype: jnp.dtype) -> np.ndarray:
    """The identity of ``max`` in ``dtype``, which padding holds: ``-inf``, or an integer type's minimum."""
    if jnp.issubdtype(dtype, jnp.floating):
        return np.array(-np.inf, dtype)
    return np.array(jnp.iinfo(dtype).min, dtype)


def max_pool_forward(config: PoolConfig, x: jax.Array) -> jax.Array:
    """Windowed maximum; padded positions hold ``-inf`` so they never win."""
    return lax.reduce_window(x, max_identity(x.dtype), lax.max, config.window, config.strides, config.padding)


def window_count(config: PoolConfig, shape: Sequence[int], dtype: jnp.dtype) -> jax.Array:
    """Number of unpadded inputs in each window, broadcastable to the output."""
    spatial_ones = jnp.ones((1, *shape[1:-1], 1), dtype)
    return lax.reduce_window(
        spatial_ones, np.zeros((), dtype), lax.add, config.window, config.strides, config.padding
    )


def avg_pool_forward(config: PoolConfig, count_include_pad: bool, x: jax.Array) -> jax.Array:
    """Windowed sum divided by the window size, or by the number of unpadded inputs."""
    total = lax.reduce_window(
        x, np.zeros((), x.dtype), lax.add, config.window, config.strides, config.padding
    )
    if count_include_pad:
        return total / math.prod(config.window)
    return total / window_count(config, x.shape, x.dtype)


# --- max-pool VJP -------------------------------------------------------------


def windows_tile_input(config: PoolConfig) -> bool:
    """Whether the windows tile the input: every stride equals its window and nothing is padded.

    A tail of fewer than ``f`` inputs that no window reaches may be left over
    at the end of an axis; its gradient is zero.
    """
    return config.strides == config.window and all(pad == (0, 0) for pad in config.padding)


def _window_offsets(window: Sequence[int]) -> list[tuple[int, ...]]:
    """Every offset ``k`` inside a window, in scan (row-major) order."""
    return list(itertools.product(*(range(f) for f in window)))


def _window_span(config: PoolConfig, out_shape: Sequence[int]) -> list[int]:
    """How far the window starts reach per axis: ``s (m - 1) + 1`` for ``m`` outputs."""
    return [s * (m - 1) + 1 for s, m in zip(config.strides, out_shape)]


def _inside_input(
    config: PoolConfig, shape: Sequence[int], out_shape: Sequence[int], offset: Sequence[int]
) -> np.ndarray:
    """Which windows' element at ``offset`` is an input, not padding: ``0 <= s o + k - lo < n``.

    A boolean array broadcastable to the output, of size 1 on the axes without padding.
    """
    mask = np.ones((1,) * len(shape), bool)
    for axis, (n, s, k, (lo, hi), m) in enumerate(
        zip(shape, config.strides, offset, config.padding, out_shape)
    ):
        if (lo, hi) != (0, 0):
            position = s * np.arange(m) + k - lo
            axis_shape = [m if a == axis else 1 for a in range(len(shape))]
            mask = mask & ((position >= 0) & (position < n)).reshape(axis_shape)
    return mask


def first_max_offset(config: PoolConfig, x: jax.Array, out_shape: Sequence[int]) -> jax.Array:
    """Each window's winner: the scan-order index of its first element equal to its maximum.

    A NaN element matches too, so a window whose maximum is NaN picks its
    first NaN. Only inputs can win, never padding, even against ``-inf``.

    The winner index is a reduction that XLA materialises once; the gradient
    then reads it, instead of re-running the comparisons of all earlier
    offsets for every element of every window. Windows that tile the input
    take :func:`_first_max_offset_tiled`, a fixed number of operations for
    any window; others :func:`_first_max_offset_sliced`, one slice per window
    offset (a global max pool of a 16×16 map took 45 s to compile that way).
    """
    if windows_tile_input(config):
        return _first_max_offset_tiled(config, x, out_shape)
    return _first_max_offset_sliced(config, x, out_shape)


def _first_max_offset_sliced(config: PoolConfig, x: jax.Array, out_shape: Sequence[int]) -> jax.Array:
    """:func:`first_max_offset` for any windows, strides and padding.

    Window ``o``'s elements at offset ``k`` are, for all ``o`` at once, the
    strided slice ``X_pad[k : k + s (m - 1) + 1 : s]`` of the padded input;
    the first offset whose element equals the maximum (or is NaN) wins.
    """
    padded = lax.pad(x, max_identity(x.dtype), [(lo, hi, 0) for lo, hi in config.padding])
    offsets = _window_offsets(config.window)
    span = _window_span(config, out_shape)
    windows = [lax.slice(padded, k, [k_a + n for k_a, n in zip(k, span)], config.strides) for k in offsets]
    y = functools.reduce(jnp.maximum, windows)
    matches = [(element == y) | jnp.isnan(element) for element in windows]
    if any(pad != (0, 0) for pad in config.padding):
        matches = [match & _inside_input(config, x.shape, out_shape, k) for match, k in zip(matches, offsets)]
    return jnp.argmax(jnp.stack(matches), axis=0)


def _first_max_offset_tiled(config: PoolConfig, x: jax.Array, out_shape: Sequence[int]) -> jax.Array:
    """:func:`first_max_offset` when the windows tile the input.

    With ``m`` windows of size ``f`` on an axis, window ``o`` holds inputs
    ``o f .. o f + f - 1``, so the first ``m f`` inputs reshape to ``(m_1,
    f_1, m_2, f_2, ...)``; the offsets move last and flatten in scan
    (row-major) order, and ``jnp.argmax`` picks the first maximum, or the
    first NaN when there is one: the tie rule of the sliced form.
    """
    covered = [m * f for m, f in zip(out_shape, config.window)]
    tiles = lax.slice(x, [0] * x.ndim, covered)
    tiles = tiles.reshape(tuple(size for m, f in zip(out_shape, config.window) for size in (m, f)))
    offsets_last = (*range(0, 2 * x.ndim, 2), *range(1, 2 * x.ndim, 2))
    return jnp.argmax(tiles.transpose(offsets_last).reshape(*out_shape, math.prod(config.window)), axis=-1)


def _to_winners_tiled(config: PoolConfig, winner: jax.Array, g: jax.Array, shape: Sequence[int]) -> jax.Array:
    """``G[o]`` to each window's winner when the windows tile the input: one select, O(1) per input.

    With ``m`` windows of size ``f`` on an axis, its first ``m f`` inputs
    reshape to ``(m, f)``, so in the tiles ``(m_1, f_1, m_2, f_2, ...)`` the
    element at offset ``k`` of window ``o`` sits at ``[o_1, k_1, o_2, k_2, ...]``:
    it gets ``G[o]`` where ``k`` is ``o``'s winner, else 0. The inverse reshape
    and zeros for the tail that no window reaches give ``dL/dX``.
    """
    per_window = tuple(size for m in g.shape for size in (m, 1))
    per_offset = tuple(size for f in config.window for size in (1, f))
    offset_index = np.arange(math.prod(config.window), dtype=winner.dtype).reshape(per_offset)
    zero = jnp.zeros((), g.dtype)
    d_tiles = jnp.where(winner.reshape(per_window) == offset_index, g.reshape(per_window), zero)
    covered = tuple(m * f for m, f in zip(g.shape, config.window))
    return lax.pad(d_tiles.reshape(covered), zero, [(0, n - c, 0) for n, c in zip(shape, covered)])


def _to_winners_general(
    config: PoolConfig, winner: jax.Array, g: jax.Array, shape: Sequence[int]
) -> jax.Array:
    """``G[o]`` to each window's winner, for any windows, strides and padding.

    For offset ``k``, the cotangents ``G[o] [k*(o) = k]`` of all windows go to
    ``X_pad[s o + k]`` by ``lax.pad`` with ``k`` zeros before, ``s - 1``
    between (interior padding) and the rest after. The ``prod(f)`` pieces add
    up (overlapping windows accumulate) and the padding is cropped off
    (negative padding of the forward pass comes back as zeros).
    """
    zero = jnp.zeros((), g.dtype)
    padded_shape = [n + lo + hi for n, (lo, hi) in zip(shape, config.padding)]
    span = _window_span(config, g.shape)

    def to_offset(index: int, k: tuple[int, ...]) -> jax.Array:
        pads = [(k_a, p - k_a - n, s - 1) for k_a, p, n, s in zip(k, padded_shape, span, config.strides)]
        return lax.pad(jnp.where(winner == index, g, zero), zero, pads)

    pieces = itertools.starmap(to_offset, enumerate(_window_offsets(config.window)))
    d_padded = functools.reduce(operator.add, pieces)
    return lax.pad(d_padded, zero, [(-lo, -hi, 0) for lo, hi in config.padding])


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def max_pool_custom(config: PoolConfig, x: jax.Array) -> jax.Array:
    """``max_pool_forward`` differentiated by the hand-written rule ``_max_pool_bwd``."""
    return max_pool_forward(config, x)


def _max_pool_fwd(config: PoolConfig, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    return max_pool_forward(config, x), x


def _max_pool_bwd(config: PoolConfig, x: jax.Array, g: jax.Array) -> tuple[jax.Array]:
    """``dL/dX[i] = sum_{o : s o + k*(o) - lo = i} G[o]``.

    ``Y[o] = max_k X_pad[s o + k]`` is, near ``X``, the identity of one input,
    the window's winner ``k*(o)``: its derivative is 1 there and 0 elsewhere,
    and overlapping windows add up.

    Tie rule: ``k*(o)`` is the FIRST offset in scan (row-major) order with
    ``X_pad[s o + k] = Y[o]``, as XLA's select-and-scatter. Padding never
    wins, even when every input of a window is ``-inf`` (JAX's autodiff lets
    the padding win there and drops that gradient). A window whose maximum is
    NaN gives its gradient to its first NaN.

    ``Y`` is recomputed from ``x``, all the forward pass saves. Windows that
    tile the input route ``G`` back with one select (O(1) per input), others
    with one strided pad per window offset (O(prod(f)) per input).
    """
    return cotangents_like(functools.partial(_max_pool_cotangent, config), (x,), x, g)


def _max_pool_cotangent(config: PoolConfig, x: jax.Array, g: jax.Array) -> tuple[jax.Array]:
    winner = first_max_offset(config, x, g.shape)
    to_winners = _to_winners_tiled if windows_tile_input(config) else _to_winners_general
    return (to_winners(config, winner, g, x.shape).astype(x.dtype),)


max_pool_custom.defvjp(_max_pool_fwd, _max_pool_bwd)


# --- avg-pool VJP -------------------------------------------------------------


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def avg_pool_custom(config: PoolConfig, count_include_pad: bool, x: jax.Array) -> jax.Array:
    """``avg_pool_forward`` differentiated by the hand-written rule ``_avg_pool_bwd``."""
    return avg_pool_forward(config, count_include_pad, x)


def _avg_pool_fwd(config: PoolConfig, count_include_pad: bool, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    # Residuals must be arrays: a zero-size one carries x's shape and dtype without keeping x alive.
    return avg_pool_forward(config, count_include_pad, x), jnp.zeros((0, *x.shape), x.dtype)


def _avg_pool_bwd(
    config: PoolConfig, count_include_pad: bool, x_like: jax.Array, g: jax.Array
) -> tuple[jax.Array]:
    """``dL/dX[i] = sum_{o : 0 <= i + lo - s o < f} G[o] / count[o]``.

    Each output spreads ``G[o] / count[o]`` evenly over its window (``count`` as
    in the forward pass: the window size, or the number of unpadded inputs).
    Per axis this is a full correlation of the stride-dilated ``H = G / count``
    with a window of ones: ``lax.pad`` ``H`` with ``s - 1`` zeros between
    entries, ``f - 1 - lo`` before and ``f - 1 + r - hi`` after, where
    ``r = n + lo + hi - f - s (m - 1)`` counts the inputs past the last window,
    then sum every window of ``f`` (stride 1). The result has length ``n``;
    negative pads crop.
    """
    shape = x_like.shape[1:]
    count = math.prod(config.window) if count_include_pad else window_count(config, shape, g.dtype)
    spread = [
        (f - 1 - lo, f - 1 + (n + lo + hi - f - s * (m - 1)) - hi, s - 1)
        for n, f, s, (lo, hi), m in zip(shape, config.window, config.strides, config.padding, g.shape)
    ]
    zero = jnp.zeros((), g.dtype)
    dilated = lax.pad(g / count, zero, spread)
    dx = lax.reduce_window(dilated, np.zeros((), g.dtype), lax.add, config.window, (1,) * g.ndim, "VALID")
    return (dx.astype(x_like.dtype),)


avg_pool_custom.defvjp(_avg_pool_fwd, _avg_pool_bwd)


def apply_max_pool(config: PoolConfig, x: jax.Array, grad: str) -> jax.Array:
    """Max pooling for a resolved ``config`` (from :func:`resolve_pool`) of a floating ``x``."""
    return select(grad, max_pool_custom, max_pool_forward)(config, x)


def apply_avg_pool(config: PoolConfig, count_include_pad: bool, x: jax.Array, grad: str) -> jax.Array:
    """Average pooling for a resolved ``config`` (from :func:`resolve_pool`) of a floating ``x``."""
    return select(grad, avg_pool_custom, avg_pool_forward)(config, count_include_pad, x)


def max_pool(
    x: jax.Array,
    window: int | Sequence[int],
    strides: int | Sequence[int] | None = None,
    padding: checks.Padding = "VALID",
    *,
    grad: str = "custom",
) -> jax.Array:
    """Max pooling over the spatial axes of ``x`` ``(N, *spatial, C)``.

    Output length per axis ``floor((n + lo + hi - f) / s) + 1``; ``strides``
    defaults to ``window``; padding is at most half the window. Integer and
    bool inputs are promoted to the default float.
    """
    checks.grad_mode("max_pool", grad)
    args = pool_args("max_pool", window, strides, padding)
    x = checks.input_array("max_pool", x)
    return apply_max_pool(resolve_pool("max_pool", args, x.shape), x, grad)


def avg_pool(
    x: jax.Array,
    window: int | Sequence[int],
    strides: int | Sequence[int] | None = None,
    padding: checks.Padding = "VALID",
    *,
    count_include_pad: bool = True,
    grad: str = "custom",
) -> jax.Array:
    """Average pooling over the spatial axes of ``x`` ``(N, *spatial, C)``.

    Integer and bool inputs are averaged in the default float (never in
    their own integer type, which would wrap and truncate).

    Args:
      count_include_pad: divide by the full window size (padding counts as
        zeros, PyTorch's default) when ``True``; by the number of unpadded
        inputs in each window when ``False``. Without padding both agree.
    """
    checks.grad_mode("avg_pool", grad)
    args = pool_args("avg_pool", window, strides, padding)
    count_include_pad = checks.boolean("avg_pool", "count_include_pad", count_include_pad)
    x = checks.input_array("avg_pool", x)
    return apply_avg_pool(resolve_pool("avg_pool", args, x.shape), count_include_pad, x, grad)
