"""Max and average pooling over the spatial axes (channels last), and max unpooling, with hand-written VJPs.

``x`` is ``(N, *spatial, C)``; windows slide over the spatial axes only::

    max_pool:  Y[n, o, c] = max_{k in window} X[n, s o + d k - lo, c]      (padding never wins)
    avg_pool:  Y[n, o, c] = (1 / count[o]) sum_{k in window} X[n, s o + k - lo, c]

with window dilation ``d`` (max pooling only). ``count`` is the number of
window positions inside the explicitly padded input (``count_include_pad=True``:
the window size, except for a last window that ceil mode lets overhang the
padding, which PyTorch divides by its clipped size) or inside the unpadded
input (``False``). Ceil mode adds windows as extra high-side padding that
never wins (max) and never counts (average).

Backward (``G = dL/dY``; derivations in ``docs/course/backward_pool.md``)::

    max_pool:  dL/dX[i] = sum_{o : s o + d k*(o) - lo = i} G[o]
               k*(o) = the first k in scan order with X_pad[s o + d k] = Y[o]
    avg_pool:  dL/dX[i] = sum_{o : 0 <= i + lo - s o < f} G[o] / count[o]

``max_pool(..., return_indices=True)`` also returns each window's winner
``k*(o)`` as a flat index ``I[n, o, c]`` into the row-major, unpadded spatial
axes of ``X[n, ..., c]``, and max unpooling puts values back at those
indices (SegNet)::

    max_unpool:  Z[n, p, c] = Y[n, o, c] where I[n, o, c] = p, else 0
    backward:    dL/dY[n, o, c] = G_Z[n, I[n, o, c], c]     (the indices get no gradient)

Two windows that share a winner carry equal values to one ``p``.

The rules treat every axis alike: the batch and channel axes are axes with
window 1, stride 1, dilation 1 and no padding.
"""

from __future__ import annotations

import functools
import itertools
import math
import operator
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from funcnn import checks, shapes
from funcnn.core import LayerConfigError
from funcnn.ops._grad import _explicit_axes, cotangents_like
from funcnn.ops._rules import HandWritten

INDEX_DTYPE = jnp.int32
"""The dtype of max-pool indices, whatever ``jax_enable_x64`` says (PyTorch's are int64)."""


class PoolArgs(NamedTuple):
    """A pooling op's arguments, parsed and checked without shapes (at a layer's construction)."""

    window: int | tuple[int, ...]
    strides: int | tuple[int, ...] | None
    padding: checks.PaddingSpec
    dilation: int | tuple[int, ...] = 1
    ceil_mode: bool = False


class PoolConfig(NamedTuple):
    """A resolved pooling op over all axes ``(N, *spatial, C)`` (hashable, the VJP's static
    argument), and the output's spatial sizes.

    ``padding`` includes ``ceil_padding``, the high-side padding that ceil mode
    added for its last, partial windows; ``()`` for ``dilation`` or
    ``ceil_padding`` means 1, resp. 0, on every axis.
    """

    window: tuple[int, ...]
    strides: tuple[int, ...]
    padding: tuple[tuple[int, int], ...]
    out_spatial: tuple[int, ...]
    dilation: tuple[int, ...] = ()
    ceil_padding: tuple[int, ...] = ()


def window_dilation(config: PoolConfig) -> tuple[int, ...]:
    """``config.dilation`` over all axes."""
    return config.dilation or (1,) * len(config.window)


def _ceil_padding(config: PoolConfig) -> tuple[int, ...]:
    return config.ceil_padding or (0,) * len(config.window)


def pool_args(
    op: str,
    window: int | Sequence[int],
    strides: int | Sequence[int] | None = None,
    padding: checks.Padding = "VALID",
    *,
    dilation: int | Sequence[int] = 1,
    ceil_mode: bool = False,
) -> PoolArgs:
    """Parse a pooling op's arguments.

    Explicit padding must be non-negative and at most half the (undilated)
    window on each side, PyTorch's rule: a window that could lie wholly in the
    padding would give ``-inf`` (max) or a mean of padding. ``ceil_mode`` with
    ``"SAME"`` padding is refused: SAME already gives ``ceil(n / s)`` windows.
    """
    window = checks.sizes(op, "window", window)
    strides = None if strides is None else checks.sizes(op, "strides", strides)
    padding = checks.padding_spec(op, padding, allow_negative=False)
    dilation = checks.sizes(op, "dilation", dilation)
    ceil_mode = checks.boolean(op, "ceil_mode", ceil_mode)
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
    if ceil_mode and padding == "SAME":
        raise LayerConfigError(
            f"{op}: argument `ceil_mode` True cannot be combined with padding 'SAME', which already gives "
            "ceil(n / s) windows per axis; use explicit padding with ceil_mode"
        )
    return PoolArgs(window, strides, padding, dilation, ceil_mode)


def resolve_pool(op: str, args: PoolArgs, x_shape: Sequence[int]) -> PoolConfig:
    """Resolve parsed ``args`` for an input of shape ``x_shape``: windows, strides, dilation and pads
    over all axes, and the output sizes; ``strides`` defaults to the window.

    Output sizes are [`funcnn.shapes.conv_output_size`][funcnn.shapes.conv_output_size] (floor) or
    [`funcnn.shapes.ceil_pool_output_size`][funcnn.shapes.ceil_pool_output_size] (ceil mode), whose extra
    windows become ``ceil_padding``.
    """
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
    dilation = checks.broadcast(op, "dilation", args.dilation, rank)
    spatial = tuple(x_shape[1:-1])
    pads = shapes.padding_pairs(op, args.padding, spatial, window, strides, dilation)
    output_size = shapes.ceil_pool_output_size if args.ceil_mode else shapes.conv_output_size
    out = tuple(output_size(*axis) for axis in zip(spatial, window, strides, pads, dilation))
    if any(o < 1 for o in out):
        dilated = "" if set(dilation) == {1} else f" dilated by {dilation}"
        raise LayerConfigError(
            f"{op}: argument `window` {window}{dilated} is larger than the padded input "
            f"(input spatial shape {spatial}, padding {pads})"
        )
    ceil = tuple(
        max(0, (m - 1) * s + shapes.dilated_size(f, d) - (n + lo + hi))
        for n, f, s, (lo, hi), d, m in zip(spatial, window, strides, pads, dilation, out)
    )
    for n, f, s, (lo, _), d, m in zip(spatial, window, strides, pads, dilation, out):
        if d == 1:  # padding within the public limit leaves an input in every undilated window
            continue
        taps = s * np.arange(m)[:, None] + d * np.arange(f) - lo
        if not np.all(np.any((taps >= 0) & (taps < n), axis=1)):
            raise LayerConfigError(
                f"{op}: argument `dilation` {args.dilation} leaves a window with padding only "
                f"(input spatial shape {spatial}, window {window}, padding {pads}); pad or dilate less"
            )
    return PoolConfig(
        (1, *window, 1),
        (1, *strides, 1),
        ((0, 0), *((lo, hi + c) for (lo, hi), c in zip(pads, ceil)), (0, 0)),
        out,
        (1, *dilation, 1),
        (0, *ceil, 0),
    )


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


def _out_shape(config: PoolConfig, shape: Sequence[int]) -> tuple[int, ...]:
    return (shape[0], *config.out_spatial, shape[-1])


def max_pool_forward(config: PoolConfig, x: jax.Array) -> jax.Array:
    """Windowed maximum; padded positions hold ``-inf`` so they never win."""
    return lax.reduce_window(
        x,
        max_identity(x.dtype),
        lax.max,
        config.window,
        config.strides,
        config.padding,
        window_dilation=window_dilation(config),
    )


def _window_elements(
    config: PoolConfig, x: jax.Array, out_shape: Sequence[int], pad: Any = None
) -> list[jax.Array]:
    """Every window's element at offset ``k``, one array per ``k`` in scan order.

    For all windows ``o`` at once it is the strided slice
    ``X_pad[d k : d k + s (m - 1) + 1 : s]`` of the input padded with ``pad``
    (``-inf``, the identity of the maximum, by default).
    """
    pad = max_identity(x.dtype) if pad is None else pad
    padded = lax.pad(x, pad, [(lo, hi, 0) for lo, hi in config.padding])
    span = _window_span(config, out_shape)
    dilation = window_dilation(config)
    starts = [[k_a * d for k_a, d in zip(k, dilation)] for k in _window_offsets(config.window)]
    return [lax.slice(padded, a, [a_a + n for a_a, n in zip(a, span)], config.strides) for a in starts]


def max_pool_sliced(config: PoolConfig, x: jax.Array) -> jax.Array:
    """The windowed maximum read at each window's winner among ``_window_elements``, which JAX
    differentiates.

    ``grad="autodiff"`` uses it for dilated windows: JAX has no VJP of
    ``reduce_window``'s maximum with window dilation. The winners
    (``first_max_offset``, under ``lax.stop_gradient``) pick one element
    per window by a chain of selects, so autodiff sends the whole gradient to
    the first maximum in scan order (or the first NaN), the custom rule's tie
    rule, where a maximum of the elements would split a tie evenly. The values
    are the maxima: the winner holds the maximum (or a NaN when it is NaN).
    """
    out_shape = _out_shape(config, x.shape)
    winner = lax.stop_gradient(first_max_offset(config, lax.stop_gradient(x), out_shape))
    return _at_winners_sliced(config, winner, x, out_shape, max_identity(x.dtype))


def _at_winners_sliced(
    config: PoolConfig, winner: jax.Array, t: jax.Array, out_shape: Sequence[int], pad: Any
) -> jax.Array:
    """``T_pad[s o + d k*(o)]``: each window's element at its winner, by a chain of selects over the
    offsets' strided slices (``_window_elements``, padded with ``pad``, which never wins)."""
    elements = _window_elements(config, t, out_shape, pad)
    y = elements[0]
    for k, element in enumerate(elements[1:], start=1):
        y = jnp.where(winner == k, element, y)
    return y


def _at_winners_tiled(
    config: PoolConfig, winner: jax.Array, t: jax.Array, out_shape: Sequence[int]
) -> jax.Array:
    """``T[o f + k*(o)]`` when the windows tile the input: the tiles of ``_first_max_offset_tiled``,
    offsets last, read at the winner by one gather."""
    covered = [m * f for m, f in zip(out_shape, config.window)]
    tiles = lax.slice(t, [0] * t.ndim, covered)
    tiles = tiles.reshape(tuple(size for m, f in zip(out_shape, config.window) for size in (m, f)))
    offsets_last = (*range(0, 2 * t.ndim, 2), *range(1, 2 * t.ndim, 2))
    tiles = tiles.transpose(offsets_last).reshape(*out_shape, math.prod(config.window))
    return jnp.take_along_axis(tiles, winner[..., None].astype(jnp.int32), axis=-1)[..., 0]


def max_pool_autodiff(config: PoolConfig, x: jax.Array) -> jax.Array:
    """The max-pool forward pass that ``grad="autodiff"`` differentiates."""
    dilated = any(d != 1 for d in window_dilation(config))
    return max_pool_sliced(config, x) if dilated else max_pool_forward(config, x)


def window_count(
    config: PoolConfig, shape: Sequence[int], dtype: jnp.dtype, *, include_pad: bool = False
) -> jax.Array:
    """How many elements of each window count, broadcastable to the output.

    Per axis, window ``o``'s positions ``s o + d k`` (``k < f``) of the padded
    input that lie in ``[lo, lo + n)`` (the unpadded inputs), or, with
    ``include_pad``, in ``[0, n + lo + hi)``, the input with its explicit
    padding but not ceil mode's (PyTorch's divisor for ``count_include_pad``:
    ``min(start + f, n + lo + hi) - start``). The count of a window is the
    product over the axes. It depends on shapes only: a constant.
    """
    count = np.ones((1,) * len(shape))
    for axis, (n, f, s, d, (lo, hi), c) in enumerate(
        zip(
            shape,
            config.window,
            config.strides,
            window_dilation(config),
            config.padding,
            _ceil_padding(config),
        )
    ):
        if axis in (0, len(shape) - 1):
            continue
        m = config.out_spatial[axis - 1]
        begin, end = (0, n + lo + hi - c) if include_pad else (lo, lo + n)
        position = s * np.arange(m)[:, None] + d * np.arange(f)
        per_axis = np.sum((position >= begin) & (position < end), axis=1)
        count = count * per_axis.reshape([m if a == axis else 1 for a in range(len(shape))])
    return jnp.asarray(count, dtype)


def avg_divisor(config: PoolConfig, count_include_pad: bool, shape: Sequence[int], dtype: jnp.dtype):
    """The divisor of each window's sum: ``window_count``, or the plain window size when every
    window counts all of it (``count_include_pad`` and no window overhanging into ceil padding)."""
    if count_include_pad and not any(_ceil_padding(config)):
        return math.prod(config.window)
    return window_count(config, shape, dtype, include_pad=count_include_pad)


def avg_pool_forward(config: PoolConfig, count_include_pad: bool, x: jax.Array) -> jax.Array:
    """Windowed sum divided by ``avg_divisor``."""
    total = lax.reduce_window(
        x, np.zeros((), x.dtype), lax.add, config.window, config.strides, config.padding
    )
    return total / avg_divisor(config, count_include_pad, x.shape, x.dtype)


# --- max-pool VJP -------------------------------------------------------------


def windows_tile_input(config: PoolConfig) -> bool:
    """Whether the windows tile the input: every stride equals its window, no dilation, nothing padded.

    A tail of fewer than ``f`` inputs that no window reaches may be left over
    at the end of an axis; its gradient is zero.
    """
    return (
        config.strides == config.window
        and all(pad == (0, 0) for pad in config.padding)
        and all(d == 1 for d in window_dilation(config))
    )


def _window_offsets(window: Sequence[int]) -> list[tuple[int, ...]]:
    """Every offset ``k`` inside a window, in scan (row-major) order."""
    return list(itertools.product(*(range(f) for f in window)))


def _window_span(config: PoolConfig, out_shape: Sequence[int]) -> list[int]:
    """How far the window starts reach per axis: ``s (m - 1) + 1`` for ``m`` outputs."""
    return [s * (m - 1) + 1 for s, m in zip(config.strides, out_shape)]


def _inside_input(
    config: PoolConfig, shape: Sequence[int], out_shape: Sequence[int], offset: Sequence[int]
) -> np.ndarray:
    """Which windows' element at ``offset`` is an input, not padding: ``0 <= s o + d k - lo < n``.

    A boolean array broadcastable to the output, of size 1 on the axes without padding.
    """
    mask = np.ones((1,) * len(shape), bool)
    for axis, (n, s, k, d, (lo, hi), m) in enumerate(
        zip(shape, config.strides, offset, window_dilation(config), config.padding, out_shape)
    ):
        if (lo, hi) != (0, 0):
            position = s * np.arange(m) + d * k - lo
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
    take ``_first_max_offset_tiled``, a fixed number of operations for
    any window; others ``_first_max_offset_sliced``, one slice per window
    offset (a global max pool of a 16×16 map took 45 s to compile that way).
    """
    if windows_tile_input(config):
        return _first_max_offset_tiled(config, x, out_shape)
    return _first_max_offset_sliced(config, x, out_shape)


def _first_max_offset_sliced(config: PoolConfig, x: jax.Array, out_shape: Sequence[int]) -> jax.Array:
    """``first_max_offset`` for any windows, strides, dilation and padding.

    The first offset whose element (``_window_elements``) equals the
    maximum (or is NaN) wins.
    """
    windows = _window_elements(config, x, out_shape)
    y = functools.reduce(jnp.maximum, windows)
    matches = [(element == y) | jnp.isnan(element) for element in windows]
    if any(pad != (0, 0) for pad in config.padding):
        offsets = _window_offsets(config.window)
        matches = [match & _inside_input(config, x.shape, out_shape, k) for match, k in zip(matches, offsets)]
    return jnp.argmax(jnp.stack(matches), axis=0)


def _first_max_offset_tiled(config: PoolConfig, x: jax.Array, out_shape: Sequence[int]) -> jax.Array:
    """``first_max_offset`` when the windows tile the input.

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
    """``G[o]`` to each window's winner, for any windows, strides, dilation and padding.

    For offset ``k``, the cotangents ``G[o] [k*(o) = k]`` of all windows go to
    ``X_pad[s o + d k]`` by ``lax.pad`` with ``d k`` zeros before, ``s - 1``
    between (interior padding) and the rest after. The ``prod(f)`` pieces add
    up (overlapping windows accumulate) and the padding is cropped off
    (negative padding of the forward pass comes back as zeros).
    """
    zero = jnp.zeros((), g.dtype)
    padded_shape = [n + lo + hi for n, (lo, hi) in zip(shape, config.padding)]
    span = _window_span(config, g.shape)
    dilation = window_dilation(config)

    def to_offset(index: int, k: tuple[int, ...]) -> jax.Array:
        pads = [
            (k_a * d, p - k_a * d - n, s - 1)
            for k_a, d, p, n, s in zip(k, dilation, padded_shape, span, config.strides)
        ]
        return lax.pad(jnp.where(winner == index, g, zero), zero, pads)

    pieces = itertools.starmap(to_offset, enumerate(_window_offsets(config.window)))
    d_padded = functools.reduce(operator.add, pieces)
    return lax.pad(d_padded, zero, [(-lo, -hi, 0) for lo, hi in config.padding])


def _max_pool_fwd(config: PoolConfig, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    return max_pool_forward(config, x), x


def _max_pool_bwd(config: PoolConfig, x: jax.Array, g: jax.Array) -> tuple[jax.Array]:
    """``dL/dX[i] = sum_{o : s o + d k*(o) - lo = i} G[o]``.

    ``Y[o] = max_k X_pad[s o + d k]`` is, near ``X``, the identity of one
    input, the window's winner ``k*(o)``: its derivative is 1 there and 0
    elsewhere, and overlapping windows add up.

    Tie rule: ``k*(o)`` is the FIRST offset in scan (row-major) order with
    ``X_pad[s o + d k] = Y[o]``, as XLA's select-and-scatter. Padding never
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


def _max_pool_jvp(config: PoolConfig, x: jax.Array, tangents: tuple[jax.Array]) -> jax.Array:
    """``dY[o] = dX_pad[s o + d k*(o)]``: each window's winner's tangent, the winner and tie rule
    of ``_max_pool_bwd`` (whose routing is this map's transpose)."""
    return _sharded_like(x, functools.partial(_max_pool_tangent, config), x, tangents[0])


def _max_pool_tangent(config: PoolConfig, x: jax.Array, t: jax.Array) -> jax.Array:
    out_shape = _out_shape(config, x.shape)
    winner = first_max_offset(config, x, out_shape)
    if windows_tile_input(config):
        return _at_winners_tiled(config, winner, t, out_shape)
    return _at_winners_sliced(config, winner, t, out_shape, jnp.zeros((), t.dtype))


MAX_POOL_RULES = HandWritten(
    "max_pool", max_pool_forward, _max_pool_fwd, _max_pool_bwd, _max_pool_jvp, autodiff=max_pool_autodiff
)
"""Max pooling's hand-written rules."""


def max_pool_indices(config: PoolConfig, x: jax.Array) -> jax.Array:
    """Each window's winner (``first_max_offset``, the gradient's tie rule) as a flat index
    into its example-channel's unpadded spatial input, row-major, ``int32``.

    Per spatial axis the winner at offset ``k_a`` of window ``o_a`` is input
    ``i_a = s o_a + d k_a - lo``, and the flat index is
    ``(..((i_1) n_2 + i_2) n_3 + ..)`` (PyTorch's ``return_indices``).
    """
    return _sharded_like(x, functools.partial(_max_pool_indices, config), lax.stop_gradient(x))


def _max_pool_indices(config: PoolConfig, x: jax.Array) -> jax.Array:
    out_shape = _out_shape(config, x.shape)
    winner = first_max_offset(config, x, out_shape).astype(INDEX_DTYPE)
    dilation = window_dilation(config)
    index = jnp.zeros(out_shape, INDEX_DTYPE)
    for axis in range(1, x.ndim - 1):
        k = winner // math.prod(config.window[axis + 1 :]) % config.window[axis]
        o = lax.broadcasted_iota(INDEX_DTYPE, out_shape, axis)
        position = config.strides[axis] * o + dilation[axis] * k - config.padding[axis][0]
        index = index * x.shape[axis] + position
    return index


def _sharded_like(like: jax.Array, f, *args: jax.Array) -> jax.Array:
    """``f(*args)``, an array of ``like``'s rank, sharded as ``like``. With Explicit mesh axes ``f``
    runs with them made Auto (as ``funcnn.ops._grad.cotangents_like`` runs the rules): its
    reshapes and scatters need no sharding annotations."""
    _, explicit = _explicit_axes((like,))
    if not explicit:
        return f(*args)
    return jax.sharding.auto_axes(f, axes=explicit, out_sharding=jax.typeof(like).sharding)(*args)


# --- avg-pool VJP -------------------------------------------------------------


def _avg_pool_primal(static: tuple[PoolConfig, bool], x: jax.Array) -> jax.Array:
    return avg_pool_forward(*static, x)


def _avg_pool_fwd(static: tuple[PoolConfig, bool], x: jax.Array) -> tuple[jax.Array, jax.Array]:
    # Residuals must be arrays: a zero-size one carries x's shape and dtype without keeping x alive.
    return avg_pool_forward(*static, x), jnp.zeros((0, *x.shape), x.dtype)


def _avg_pool_bwd(static: tuple[PoolConfig, bool], x_like: jax.Array, g: jax.Array) -> tuple[jax.Array]:
    """``dL/dX[i] = sum_{o : 0 <= i + lo - s o < f} G[o] / count[o]``.

    Each output spreads ``G[o] / count[o]`` evenly over its window (``count`` as
    in the forward pass, ``avg_divisor``). Per axis this is a full
    correlation of the stride-dilated ``H = G / count`` with a window of ones:
    ``lax.pad`` ``H`` with ``s - 1`` zeros between entries, ``f - 1 - lo``
    before and ``f - 1 + r - hi`` after, where ``r = n + lo + hi - f - s (m - 1)``
    counts the inputs past the last window, then sum every window of ``f``
    (stride 1). The result has length ``n``; negative pads crop, and ceil
    mode's padding (part of ``hi``) is cropped like any other.
    """
    config, count_include_pad = static
    shape = x_like.shape[1:]
    count = avg_divisor(config, count_include_pad, shape, g.dtype)
    spread = [
        (f - 1 - lo, f - 1 + (n + lo + hi - f - s * (m - 1)) - hi, s - 1)
        for n, f, s, (lo, hi), m in zip(shape, config.window, config.strides, config.padding, g.shape)
    ]
    zero = jnp.zeros((), g.dtype)
    dilated = lax.pad(g / count, zero, spread)
    dx = lax.reduce_window(dilated, np.zeros((), g.dtype), lax.add, config.window, (1,) * g.ndim, "VALID")
    return (dx.astype(x_like.dtype),)


def _avg_pool_jvp(static: tuple[PoolConfig, bool], x_like: jax.Array, tangents: tuple) -> jax.Array:
    """``dY = avg_pool(dX)``: the map is linear, so its JVP is the map itself."""
    return avg_pool_forward(*static, tangents[0])


AVG_POOL_RULES = HandWritten("avg_pool", _avg_pool_primal, _avg_pool_fwd, _avg_pool_bwd, _avg_pool_jvp)
"""Average pooling's hand-written rules (the static part is ``(config, count_include_pad)``)."""


def apply_max_pool(
    config: PoolConfig, x: jax.Array, grad: str, *, return_indices: bool = False
) -> jax.Array | tuple[jax.Array, jax.Array]:
    """Max pooling for a resolved ``config`` (from ``resolve_pool``) of a floating ``x``;
    with ``return_indices``, the pair ``(y, indices)`` (``max_pool_indices``)."""
    y = MAX_POOL_RULES.select(grad)(config, x)
    return (y, max_pool_indices(config, x)) if return_indices else y


def apply_avg_pool(config: PoolConfig, count_include_pad: bool, x: jax.Array, grad: str) -> jax.Array:
    """Average pooling for a resolved ``config`` (from ``resolve_pool``) of a floating ``x``."""
    return AVG_POOL_RULES.select(grad)((config, count_include_pad), x)


def max_pool(
    x: jax.Array,
    window: int | Sequence[int],
    strides: int | Sequence[int] | None = None,
    padding: checks.Padding = "VALID",
    *,
    dilation: int | Sequence[int] = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
    grad: str | None = None,
) -> jax.Array | tuple[jax.Array, jax.Array]:
    """Max pooling over the spatial axes of ``x`` ``(N, *spatial, C)``.

    Output length per axis ``floor((n + lo + hi - d (f - 1) - 1) / s) + 1``
    ([`funcnn.shapes.conv_output_size`][funcnn.shapes.conv_output_size]); ``strides`` defaults to
    ``window``; padding is at most half the (undilated) window. Integer and bool inputs
    are promoted to the default float.

    Args:
      x: the input ``(N, *spatial, C)``, channels last, with at least one non-empty spatial axis.
      window: the window size ``f``: a positive int (broadcast to every spatial axis) or one per
        spatial axis (1 to 3 entries).
      strides: the step ``s`` between windows, as ``window``; ``None`` (the default) uses the
        window.
      padding: ``"VALID"`` (the default), ``"SAME"`` (``ceil(n / s)`` windows; any case), a
        non-negative int for both sides of every axis, or one entry per spatial axis, an int or a
        ``(low, high)`` pair; explicit padding at most ``f // 2`` on each side.
      dilation: window dilation ``d``: window ``o`` takes the inputs
        ``s o + d k - lo``, ``k < f`` (PyTorch's ``dilation``).
      ceil_mode: round the number of windows up (PyTorch's rule,
        [`funcnn.shapes.ceil_pool_output_size`][funcnn.shapes.ceil_pool_output_size]): a last, partial window
        that starts on an input or the low padding is kept. Not with ``"SAME"``.
      return_indices: also return each window's winner as a flat ``int32``
        index into its example-channel's unpadded spatial input, the pair
        ``(y, indices)`` that [`max_unpool`][funcnn.ops.pool.max_unpool] takes. Ties go to the first
        maximum in scan order, a NaN window to its first NaN (the gradient's
        rule; PyTorch's CPU kernel picks the last NaN).
      grad: ``"custom"`` (the hand-written rule and its JVP), ``"custom_vjp"`` (the rule through
        ``jax.custom_vjp``, reverse mode only) or ``"autodiff"``; with dilation, autodiff
        differentiates ``max_pool_sliced`` (JAX has no VJP of a dilated ``reduce_window`` maximum),
        which reads each window at its first maximum, so ties follow the custom rule. ``None`` takes
        the mode in force ([`funcnn.grad_mode`][funcnn.core.grad_mode], ``"custom"`` outside it).

    Returns:
      The window maxima ``y``, ``(N, *out_spatial, C)`` with the output lengths above
        (``ceil(n / s)`` with ``"SAME"``, the ceil-mode length with ``ceil_mode``), NaN for a window
        holding a NaN, in ``x``'s dtype (the default float for an integer or bool ``x``); with
        ``return_indices``, the pair ``(y, indices)``, ``indices`` an ``int32`` array of ``y``'s
        shape.

    Raises:
      LayerConfigError: when the op is called (at trace time under ``jit``) if ``grad`` is not
        ``None``, ``"custom"``, ``"custom_vjp"`` or ``"autodiff"``; ``window``, ``strides`` or
        ``dilation`` is not a positive int or 1 to 3 of them; ``padding`` is none of the forms above,
        negative, or more than half the window on a side; ``padding`` and ``window`` sequences differ
        in length; ``ceil_mode`` or ``return_indices`` is not a Python or NumPy bool, or ``ceil_mode``
        is true with ``"SAME"``; ``x`` is not an array or a number or has a complex or non-numeric
        dtype. Or if the shapes do not fit: ``x`` has rank below 3 or an empty spatial axis; a
        per-axis argument's length is not the spatial rank; the (dilated) window is larger than the
        padded input; or the dilation leaves a window with padding only.

    Examples:
        >>> import jax.numpy as jnp
        >>> y, i = max_pool(jnp.array([[[1.0], [3.0], [2.0], [5.0], [4.0]]]), 2, ceil_mode=True,
        ...                 return_indices=True)
        >>> y[0, :, 0].tolist(), i[0, :, 0].tolist()
        ([3.0, 5.0, 4.0], [1, 3, 4])
    """
    checks.grad_mode("max_pool", grad)
    args = pool_args("max_pool", window, strides, padding, dilation=dilation, ceil_mode=ceil_mode)
    return_indices = checks.boolean("max_pool", "return_indices", return_indices)
    x = checks.input_array("max_pool", x)
    return apply_max_pool(resolve_pool("max_pool", args, x.shape), x, grad, return_indices=return_indices)


def avg_pool(
    x: jax.Array,
    window: int | Sequence[int],
    strides: int | Sequence[int] | None = None,
    padding: checks.Padding = "VALID",
    *,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    grad: str | None = None,
) -> jax.Array:
    """Average pooling over the spatial axes of ``x`` ``(N, *spatial, C)``.

    Integer and bool inputs are averaged in the default float (never in
    their own integer type, which would wrap and truncate).

    Args:
      x: the input ``(N, *spatial, C)``, channels last, with at least one non-empty spatial axis.
      window: the window size ``f``: a positive int (broadcast to every spatial axis) or one per
        spatial axis (1 to 3 entries).
      strides: the step ``s`` between windows, as ``window``; ``None`` (the default) uses the
        window.
      padding: ``"VALID"`` (the default), ``"SAME"`` (``ceil(n / s)`` windows; any case), a
        non-negative int for both sides of every axis, or one entry per spatial axis, an int or a
        ``(low, high)`` pair; explicit padding at most ``f // 2`` on each side.
      ceil_mode: round the number of windows up, as [`max_pool`][funcnn.ops.pool.max_pool]. A last
        window that overhangs the padded input is divided by its part inside
        it (``count_include_pad``), as PyTorch does.
      count_include_pad: divide by the full window size (padding counts as
        zeros, PyTorch's default) when ``True``; by the number of unpadded
        inputs in each window when ``False``. Without padding both agree.
      grad: ``"custom"`` (the hand-written rule and its JVP), ``"custom_vjp"`` (the rule through
        ``jax.custom_vjp``, reverse mode only) or ``"autodiff"``; ``None`` takes the mode in force
        ([`funcnn.grad_mode`][funcnn.core.grad_mode], ``"custom"`` outside it).

    Returns:
      The window means, ``(N, *out_spatial, C)`` with the output sizes of
        [`max_pool`][funcnn.ops.pool.max_pool] (undilated), in ``x``'s dtype (the default float for an
        integer or bool ``x``).

    Raises:
      LayerConfigError: when the op is called (at trace time under ``jit``) if ``grad`` is not
        ``None``, ``"custom"``, ``"custom_vjp"`` or ``"autodiff"``; ``window`` or ``strides`` is not a
        positive int or 1 to 3 of them; ``padding`` is none of the forms above, negative, or more than
        half the window on a side; ``padding`` and ``window`` sequences differ in length;
        ``ceil_mode`` or ``count_include_pad`` is not a Python or NumPy bool, or ``ceil_mode`` is true
        with ``"SAME"``; ``x`` is not an array or a number or has a complex or non-numeric dtype. Or
        if the shapes do not fit: ``x`` has rank below 3 or an empty spatial axis; a per-axis
        argument's length is not the spatial rank; or the window is larger than the padded input.
    """
    checks.grad_mode("avg_pool", grad)
    args = pool_args("avg_pool", window, strides, padding, ceil_mode=ceil_mode)
    count_include_pad = checks.boolean("avg_pool", "count_include_pad", count_include_pad)
    x = checks.input_array("avg_pool", x)
    return apply_avg_pool(resolve_pool("avg_pool", args, x.shape), count_include_pad, x, grad)


# --- max unpooling ------------------------------------------------------------


class UnpoolArgs(NamedTuple):
    """Max unpooling's arguments, parsed without shapes: the pool's window, strides and padding
    (which give the default output size) and an optional output size."""

    window: int | tuple[int, ...]
    strides: int | tuple[int, ...] | None
    padding: int | tuple[tuple[int, int], ...]
    output_size: int | tuple[int, ...] | None = None


def unpool_args(
    op: str,
    window: int | Sequence[int],
    strides: int | Sequence[int] | None = None,
    padding: int | Sequence[int] | Sequence[tuple[int, int]] = 0,
    output_size: int | Sequence[int] | None = None,
) -> UnpoolArgs:
    """Parse max unpooling's arguments: the max pool's ``window``, ``strides`` and explicit,
    non-negative ``padding`` (``"VALID"`` is 0), and ``output_size`` (``None``: the default)."""
    window = checks.sizes(op, "window", window)
    strides = None if strides is None else checks.sizes(op, "strides", strides)
    padding = checks.padding_spec(op, padding, allow_negative=False)
    if padding == "SAME":
        raise LayerConfigError(
            f"{op}: argument `padding` 'SAME' depends on the pooled input's size; give the pool's "
            "explicit padding or `output_size`"
        )
    padding = 0 if padding == "VALID" else padding
    output_size = None if output_size is None else checks.sizes(op, "output_size", output_size)
    return UnpoolArgs(window, strides, padding, output_size)


def unpool_indices(where: str, indices: Any, argument: str = "indices") -> Any:
    """Check max-unpooling indices: an integer array."""
    indices = checks.as_array(where, indices, argument)
    if not jnp.issubdtype(indices.dtype, jnp.integer):
        raise LayerConfigError(
            f"{where}: argument `{argument}` must be an integer array (the indices of "
            f"max_pool(..., return_indices=True)), got dtype {indices.dtype} (shape {tuple(indices.shape)})"
        )
    return indices


def resolve_unpool(
    op: str, args: UnpoolArgs, x_shape: Sequence[int], indices_shape: Sequence[int], *, values: str = "x"
) -> tuple[int, ...]:
    """The output's spatial sizes for values of shape ``x_shape`` and their ``indices``.

    The default is PyTorch's ``d = (n - 1) s - lo - hi + f`` per axis, the
    smallest input from which the max pool gives ``n`` windows; a given
    ``output_size`` must lie strictly within the stride of it, PyTorch's range
    (up to ``d + s - 1`` the pool gives ``n`` windows; from ``d - s + 1`` up,
    in ceil mode). ``values`` names the values' argument in messages.
    """
    if tuple(indices_shape) != tuple(x_shape):
        raise LayerConfigError(
            f"{op}: argument `indices` has shape {tuple(indices_shape)} but `{values}` has shape "
            f"{tuple(x_shape)}; pass the indices of the max pool that gave these values"
        )
    if len(x_shape) < 3:
        raise LayerConfigError(
            f"{op}: argument `{values}` must have rank >= 3 (batch, spatial..., channels), "
            f"but has shape {tuple(x_shape)}"
        )
    rank = len(x_shape) - 2
    spatial = tuple(x_shape[1:-1])
    window = checks.broadcast(op, "window", args.window, rank)
    strides = window if args.strides is None else checks.broadcast(op, "strides", args.strides, rank)
    pads = shapes.padding_pairs(op, args.padding, spatial, window, strides, (1,) * rank)
    default = tuple((n - 1) * s - lo - hi + f for n, f, s, (lo, hi) in zip(spatial, window, strides, pads))
    if args.output_size is None:
        out = default
    else:
        out = checks.broadcast(op, "output_size", args.output_size, rank)
        if not all(d - s < o < d + s for o, d, s in zip(out, default, strides)):
            allowed = tuple((d - s + 1, d + s - 1) for d, s in zip(default, strides))
            raise LayerConfigError(
                f"{op}: argument `output_size` {out} does not fit `{values}` of spatial shape {spatial}: "
                f"a max pool with window {window}, strides {strides} and padding {pads} gives that shape "
                f"for input sizes in {allowed} per axis"
            )
    if any(o < 1 for o in out):
        raise LayerConfigError(
            f"{op}: argument `padding` {pads} leaves no output for `{values}` of spatial shape {spatial} "
            f"(window {window}, strides {strides}: output size {out})"
        )
    return out


def check_index_range(
    where: str, indices: Any, out_spatial: Sequence[int], argument: str = "indices"
) -> None:
    """Concrete indices lie in ``[0, prod(out_spatial))``; traced ones cannot be checked (out-of-range
    indices are then dropped)."""
    if isinstance(indices, jax.core.Tracer):
        return
    values = np.asarray(indices)
    size = math.prod(out_spatial)
    if values.size and (values.min() < 0 or values.max() >= size):
        raise LayerConfigError(
            f"{where}: argument `{argument}` holds values from {values.min()} to {values.max()}, outside "
            f"[0, {size}) for the output spatial shape {tuple(out_spatial)}; were they taken from "
            "another shape?"
        )


def _flat_indices(indices: jax.Array, size: int) -> jax.Array:
    """``(N, Q, C)`` indices, with every out-of-range one replaced by ``size`` (which scatters drop
    and gathers fill with 0)."""
    flat = indices.reshape(indices.shape[0], -1, indices.shape[-1])
    return jnp.where((flat >= 0) & (flat < size), flat, size)


def max_unpool_forward(out_spatial: tuple[int, ...], x: jax.Array, indices: jax.Array) -> jax.Array:
    """``Z[n, I[n, o, c], c] = X[n, o, c]`` in a zero ``(N, *out_spatial, C)`` array."""
    return _sharded_like(x, functools.partial(_scatter_to_indices, out_spatial), x, indices)


def _scatter_to_indices(out_spatial: tuple[int, ...], x: jax.Array, indices: jax.Array) -> jax.Array:
    n, c, size = x.shape[0], x.shape[-1], math.prod(out_spatial)
    batch = lax.broadcasted_iota(INDEX_DTYPE, (n, 1, 1), 0)
    channel = lax.broadcasted_iota(INDEX_DTYPE, (1, 1, c), 2)
    flat = _flat_indices(indices.astype(INDEX_DTYPE), size)
    z = jnp.zeros((n, size, c), x.dtype).at[batch, flat, channel].set(x.reshape(n, -1, c), mode="drop")
    return z.reshape(n, *out_spatial, c)


def _max_unpool_fwd(out_spatial, x, indices):
    # x is kept for its type (shape, dtype and sharding), which its cotangent must have.
    return max_unpool_forward(out_spatial, x, indices), (x, indices)


def _max_unpool_bwd(out_spatial, residuals, g):
    """``dL/dX[n, o, c] = G[n, I[n, o, c], c]``; the indices get no gradient.

    ``Z`` copies ``X[n, o, c]`` to ``I[n, o, c]``: each value's cotangent is
    the cotangent at its index, a gather (PyTorch's rule too). Where two
    indices coincide both get it; JAX's autodiff of the scatter gives it to
    one of them. Out-of-range indices get 0.
    """
    x, indices = residuals
    return (*cotangents_like(_max_unpool_cotangent, (x,), indices, g), None)


def _max_unpool_cotangent(indices: jax.Array, g: jax.Array) -> tuple[jax.Array]:
    n, c = g.shape[0], g.shape[-1]
    size = math.prod(g.shape[1:-1])
    flat = _flat_indices(indices.astype(INDEX_DTYPE), size)
    dx = jnp.take_along_axis(g.reshape(n, size, c), flat, axis=1, mode="fill", fill_value=0)
    return (dx.reshape(indices.shape),)


def _max_unpool_jvp(out_spatial, residuals, tangents):
    """``dZ[n, I[n, o, c], c] = dX[n, o, c]``: the map is linear in ``X``, so its JVP is the map itself
    (where two indices coincide the forward pass keeps one value, and so does this)."""
    _, indices = residuals
    return max_unpool_forward(out_spatial, tangents[0], indices)


MAX_UNPOOL_RULES = HandWritten(
    "max_unpool", max_unpool_forward, _max_unpool_fwd, _max_unpool_bwd, _max_unpool_jvp
)
"""Max unpooling's hand-written rules."""


def apply_max_unpool(out_spatial: tuple[int, ...], x: jax.Array, indices: jax.Array, grad: str) -> jax.Array:
    """Max unpooling to the spatial shape ``out_spatial`` (from ``resolve_unpool``)."""
    return MAX_UNPOOL_RULES.select(grad)(out_spatial, x, indices)


def max_unpool(
    x: jax.Array,
    indices: jax.Array,
    window: int | Sequence[int],
    strides: int | Sequence[int] | None = None,
    padding: int | Sequence[int] | Sequence[tuple[int, int]] = 0,
    output_size: int | Sequence[int] | None = None,
    *,
    grad: str | None = None,
) -> jax.Array:
    """Max unpooling (SegNet): put each value of ``x`` ``(N, *spatial, C)`` at its index of
    ``max_pool(..., return_indices=True)`` in a zero ``(N, *output_size, C)`` array.

    ``torch.nn.functional.max_unpool{1,2,3}d`` in channels-last.

    Concrete indices are checked to lie in the output; traced ones out of
    range are dropped.

    Args:
      x: the values, ``(N, *spatial, C)``, channels last, with at least one spatial axis, usually a
        max pool's output or features of its shape; integer and bool values are promoted to the
        default float.
      indices: an integer array of ``x``'s shape: flat indices into each
        example-channel's output spatial axes (row-major); they get no gradient.
      window: the max pool's window ``f``, a positive int or one per spatial axis; with the strides
        and padding it gives the default output size ``(n - 1) s - lo - hi + f`` per axis.
      strides: the max pool's strides ``s``, as ``window`` (default: the window).
      padding: the max pool's explicit padding: a non-negative int for both sides of every axis,
        or one entry per spatial axis, an int or a ``(low, high)`` pair; ``"VALID"`` is 0 (the
        default), ``"SAME"`` is refused.
      output_size: the output's spatial shape, a positive int or one per spatial axis, for a pool
        whose input size the default does not recover (strides that do not divide, ceil mode);
        each entry strictly within the stride of the default. ``None`` (the default): the default.
      grad: ``"custom"`` (the gather rule and its JVP), ``"custom_vjp"`` (the rule through
        ``jax.custom_vjp``, reverse mode only) or ``"autodiff"``; ``None`` takes the mode in force
        ([`funcnn.grad_mode`][funcnn.core.grad_mode], ``"custom"`` outside it).

    Returns:
      ``(N, *output_size, C)``, zero but for the values of ``x`` at their indices, in ``x``'s dtype
        (the default float for an integer or bool ``x``).

    Raises:
      LayerConfigError: when the op is called (at trace time under ``jit``) if ``grad`` is not
        ``None``, ``"custom"``, ``"custom_vjp"`` or ``"autodiff"``; ``window``, ``strides`` or
        ``output_size`` is not a positive int or 1 to 3 of them; ``padding`` is ``"SAME"``, negative
        or none of the forms above; ``x`` or ``indices`` is not an array or a number or has a
        complex or non-numeric dtype, or ``indices`` is not of an integer dtype. Or if the shapes do
        not fit: ``indices``'s shape is not ``x``'s; ``x`` has rank below 3; a per-axis argument's
        length is not the spatial rank; ``output_size`` is not strictly within the stride of the
        default on every axis; the padding leaves an output size below 1; or concrete ``indices``
        hold a value outside ``[0, prod(output_size))``.

    Examples:
        >>> import jax.numpy as jnp
        >>> from funcnn.ops.pool import max_pool
        >>> x = jnp.array([[[1.0], [3.0], [2.0], [5.0]]])
        >>> max_unpool(*max_pool(x, 2, return_indices=True), 2)[0, :, 0].tolist()
        [0.0, 3.0, 0.0, 5.0]
    """
    checks.grad_mode("max_unpool", grad)
    args = unpool_args("max_unpool", window, strides, padding, output_size)
    x = checks.input_array("max_unpool", x)
    indices = unpool_indices("max_unpool", indices)
    out_spatial = resolve_unpool("max_unpool", args, x.shape, indices.shape)
    check_index_range("max_unpool", indices, out_spatial)
    return apply_max_unpool(out_spatial, x, indices, grad)
