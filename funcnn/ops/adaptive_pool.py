"""Adaptive average and max pooling: the output size is given, the windows follow from it.

``x`` is ``(N, *spatial, C)``. Along a spatial axis of length ``n`` with ``o``
outputs, window ``i`` covers (PyTorch's rule)::

    [s_i, e_i) = [floor(i n / o), ceil((i + 1) n / o)),   l_i = e_i - s_i

so the windows tile the axis when ``o`` divides ``n``, neighbours share at most
one input when it does not, and for ``o > n`` windows of one or two inputs
repeat. Both pools are separable, one axis at a time from the last spatial
axis to the first (the mean over a box is the mean of its rows' means, its
maximum the maximum of its rows' maxima)::

    avg:  Y = A X along each axis,  A[i, h] = 1 / l_i  for s_i <= h < e_i, else 0
    max:  Y[i] = max_{s_i <= h < e_i} X[h]  along each axis

Backward (``G = dL/dY``), axis by axis in the reverse order::

    avg:  dL/dX = A^T G,   dL/dX[h] = sum_{i : s_i <= h < e_i} G[i] / l_i
    max:  dL/dX[h] = sum_{i : s_i + k*_i = h} G[i],   k*_i = the first offset with X[s_i + k] = Y[i]

Taking the last axis first makes the max rule's winner the first maximum of
the whole window in scan (row-major) order: the first row holding the
maximum, and the first maximum within that row. It is ``MaxPool``'s tie rule
(and PyTorch's); a window holding a NaN gives its gradient to its first NaN
(PyTorch's kernel picks the last one).

Per axis, window ``i`` has ``L = max_i l_i`` slots ``X[s_i + min(k, l_i - 1)]``
(a reshape of the axis to ``(o, L)`` when ``o`` divides ``n``): the slots past
a window's end repeat its last input, which changes no maximum and which the
mean masks out. Going back, input ``h`` gathers ``G`` from the at most ``R``
windows that hold it (``R <= 2`` when ``o <= n``); the max rule with short
rows and long windows scatters ``G`` to the ``o`` winners instead.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from funcnn import checks
from funcnn.core import LayerConfigError
from funcnn.ops._rules import HandWritten
from funcnn.ops.pool import max_identity

OutputSize = int | tuple[int | None, ...]
"""A parsed ``output_size``: one size for every spatial axis, or one entry per axis (``None`` keeps it)."""


class AdaptiveConfig(NamedTuple):
    """A resolved adaptive pool (hashable, the VJP's static argument): the input's and the
    output's spatial sizes."""

    in_spatial: tuple[int, ...]
    out_spatial: tuple[int, ...]


def adaptive_args(op: str, output_size: int | Sequence[int | None]) -> OutputSize:
    """Parse ``output_size``: a positive int, or 1 to 3 entries each a positive int or ``None``.

    NumPy integers are accepted; bools, floats and strings are refused.
    """
    kind = "a positive integer or 1, 2 or 3 entries each a positive integer or None"
    if checks.is_int(output_size):
        if output_size < 1:
            raise LayerConfigError(
                f"{op}: argument `output_size` must be a positive integer, got {output_size!r} (int)"
            )
        return int(output_size)
    if isinstance(output_size, (str, bytes)) or not isinstance(output_size, Sequence | np.ndarray):
        raise LayerConfigError(
            f"{op}: argument `output_size` must be {kind}, got {output_size!r} ({type(output_size).__name__})"
        )
    entries = tuple(output_size)
    if not 1 <= len(entries) <= 3 or not all(e is None or (checks.is_int(e) and e >= 1) for e in entries):
        raise LayerConfigError(f"{op}: argument `output_size` must be {kind}, got {entries!r}")
    return tuple(None if e is None else int(e) for e in entries)


def resolve_adaptive(op: str, output_size: OutputSize, x_shape: Sequence[int]) -> AdaptiveConfig:
    """Resolve a parsed ``output_size`` for an input of shape ``x_shape`` ``(N, *spatial, C)``."""
    checks.check_rank(op, "x", x_shape, (3, 4, 5))
    spatial = tuple(x_shape[1:-1])
    if any(n < 1 for n in spatial):
        raise LayerConfigError(f"{op}: argument `x` has an empty spatial axis: shape {tuple(x_shape)}")
    if isinstance(output_size, int):
        return AdaptiveConfig(spatial, (output_size,) * len(spatial))
    if len(output_size) != len(spatial):
        raise LayerConfigError(
            f"{op}: argument `output_size` has {len(output_size)} entries {output_size} but the input has "
            f"{len(spatial)} spatial dimensions (input shape {tuple(x_shape)})"
        )
    return AdaptiveConfig(spatial, tuple(n if o is None else o for n, o in zip(spatial, output_size)))


# --- one axis -----------------------------------------------------------------------


class AxisWindows(NamedTuple):
    """The windows of one axis of length ``n`` with ``o`` outputs, as static tables.

    Forward: ``index[i, k] = s_i + min(k, l_i - 1)``, the ``L = max_i l_i``
    slots of window ``i``, its last input repeated past its end (``valid[i, k]
    = k < l_i``). Backward: ``holder[h, r]``, the ``r``-th window holding input
    ``h`` (at most ``R`` do), and ``offset[h, r] = h - s_i``, the slot it holds
    ``h`` in, or ``-1`` where ``h`` has fewer than ``R`` windows. ``tiles``: ``o``
    divides ``n``, and window ``i`` is ``[i L, (i + 1) L)``.
    """

    length: np.ndarray
    index: np.ndarray
    valid: np.ndarray
    holder: np.ndarray
    offset: np.ndarray
    tiles: bool


@functools.cache
def axis_windows(n: int, o: int) -> AxisWindows:
    """PyTorch's windows for ``o`` outputs over ``n`` inputs (see the module docstring)."""
    i = np.arange(o)
    start = i * n // o
    length = -(-(i + 1) * n // o) - start
    k = np.arange(int(length.max()))
    index = start[:, None] + np.minimum(k, length[:, None] - 1)
    valid = k < length[:, None]
    holders: list[list[tuple[int, int]]] = [[] for _ in range(n)]
    for window, slot in zip(*np.nonzero(valid)):
        holders[index[window, slot]].append((int(window), int(slot)))
    depth = max(len(h) for h in holders)
    padded = [h + [(h[-1][0], -1)] * (depth - len(h)) for h in holders]
    holder, offset = np.moveaxis(np.array(padded), -1, 0)
    tables = (length, index, valid, holder, offset)
    for table in tables:
        table.setflags(write=False)
    return AxisWindows(*tables, n % o == 0)


def _at(table: np.ndarray, axis: int, ndim: int) -> np.ndarray:
    """A static 1-D ``table`` along ``axis`` of an array of rank ``ndim``, broadcastable to it."""
    return table.reshape((1,) * axis + table.shape + (1,) * (ndim - axis - 1))


def _take(x: jax.Array, index: np.ndarray, axis: int) -> jax.Array:
    """``x[..., index, ...]`` along ``axis`` for a static 1-D ``index``: one gather."""
    dims = lax.GatherDimensionNumbers(
        offset_dims=tuple(d for d in range(x.ndim) if d != axis),
        collapsed_slice_dims=(axis,),
        start_index_map=(axis,),
    )
    sizes = (*x.shape[:axis], 1, *x.shape[axis + 1 :])
    mode = lax.GatherScatterMode.PROMISE_IN_BOUNDS
    return lax.gather(x, index.astype(np.int32)[:, None], dims, sizes, mode=mode)


def _tiles(x: jax.Array, axis: int, w: AxisWindows) -> jax.Array:
    """Windows that tile ``axis``: the axis reshaped to ``(o, L)``."""
    return x.reshape((*x.shape[:axis], *w.index.shape, *x.shape[axis + 1 :]))


def _untile(u: jax.Array, axis: int) -> jax.Array:
    """The inverse of ``_tiles``: ``(o, L)`` at ``axis`` back to ``o L = n``."""
    return u.reshape((*u.shape[:axis], u.shape[axis] * u.shape[axis + 1], *u.shape[axis + 2 :]))


# Windows that do not tile are read slot by slot, ``X[index[:, k]]`` for every
# window at once, and written back holder by holder, ``G[holder[:, r]]`` for
# every input at once: chains of ``L`` (or ``R``) gathers and elementwise ops
# that XLA fuses into one loop. The winners (``_first_max``) come from such
# a chain too, but XLA fuses a chain into each of its consumers, and the
# backward pass reads each winner ``R`` times: ``_materialised`` makes XLA
# compute them once (5x faster training steps). A reduction over one gather of
# the whole ``(o, L)`` table, the obvious form, ran 3-10x slower than a chain on
# XLA:CPU (the gather fused into the reduction loses its vector loads), but its
# compile time does not grow with ``L``: the max pool takes it for windows
# longer than ``LONG_WINDOW``.


def _where(keep: np.ndarray, axis: int, x: jax.Array) -> jax.Array:
    """``x`` where the static 1-D mask ``keep`` along ``axis`` holds, else 0 (``x`` when it always holds)."""
    return x if keep.all() else jnp.where(_at(keep, axis, x.ndim), x, jnp.zeros((), x.dtype))


def _pooled_axes(config: AdaptiveConfig) -> list[tuple[int, AxisWindows]]:
    """The spatial axes that pool (``o != n``), last first, with their windows."""
    sizes = list(enumerate(zip(config.in_spatial, config.out_spatial), start=1))
    return [(axis, axis_windows(n, o)) for axis, (n, o) in reversed(sizes) if n != o]


# --- average ------------------------------------------------------------------------


def _mean_along(x: jax.Array, axis: int, w: AxisWindows) -> jax.Array:
    """``A x`` along ``axis``: each window's sum over its valid slots, divided by its length."""
    if w.tiles:
        total = jnp.sum(_tiles(x, axis, w), axis=axis + 1)
    else:
        total = _take(x, w.index[:, 0], axis)
        for k in range(1, w.index.shape[1]):
            total = total + _where(w.valid[:, k], axis, _take(x, w.index[:, k], axis))
    return total / _at(w.length.astype(x.dtype), axis, x.ndim)


def _mean_transpose(g: jax.Array, axis: int, w: AxisWindows) -> jax.Array:
    """``A^T g`` along ``axis``: each input sums ``G[i] / l_i`` over the windows ``i`` holding it."""
    share = g / _at(w.length.astype(g.dtype), axis, g.ndim)
    if w.tiles:
        shape = (*g.shape[: axis + 1], w.index.shape[1], *g.shape[axis + 1 :])
        return _untile(jnp.broadcast_to(jnp.expand_dims(share, axis + 1), shape), axis)
    total = _take(share, w.holder[:, 0], axis)
    for r in range(1, w.holder.shape[1]):
        total = total + _where(w.offset[:, r] >= 0, axis, _take(share, w.holder[:, r], axis))
    return total


def adaptive_avg_pool_forward(config: AdaptiveConfig, x: jax.Array) -> jax.Array:
    """``Y = A X`` along each pooled axis."""
    for axis, w in _pooled_axes(config):
        x = _mean_along(x, axis, w)
    return x


def _avg_fwd(config: AdaptiveConfig, x: jax.Array) -> tuple[jax.Array, tuple[()]]:
    return adaptive_avg_pool_forward(config, x), ()


def _avg_bwd(config: AdaptiveConfig, residuals: tuple[()], g: jax.Array) -> tuple[jax.Array]:
    """``dL/dX = A^T G`` along each pooled axis: ``dL/dX[h] = sum_{i : s_i <= h < e_i} G[i] / l_i``.

    ``Y = A_1 ... A_r X`` is linear, so its transpose applies the ``A^T``s in
    the reverse order: the first axis, pooled last, goes back first. Each
    ``A^T`` is applied sparsely: input ``h`` gathers ``G[i] / l_i`` from the
    at most ``R`` windows ``i`` that hold it (2 when ``o <= n``).
    """
    for axis, w in reversed(_pooled_axes(config)):
        g = _mean_transpose(g, axis, w)
    return (g,)


def _avg_jvp(config: AdaptiveConfig, residuals: tuple[()], tangents: tuple[jax.Array]) -> jax.Array:
    """``dY = A dX``: the map is linear, so its JVP is the map itself."""
    return adaptive_avg_pool_forward(config, tangents[0])


ADAPTIVE_AVG_RULES = HandWritten("adaptive_avg_pool", adaptive_avg_pool_forward, _avg_fwd, _avg_bwd, _avg_jvp)
"""Adaptive average pooling's hand-written rules."""


# --- max ----------------------------------------------------------------------------


def _winner_dtype(width: int) -> jnp.dtype:
    """The narrowest integer dtype for offsets ``0 .. width - 1``: the winners the forward pass saves."""
    return jnp.dtype(jnp.int8 if width <= 127 else jnp.int32)


LONG_WINDOW = 64
"""Windows that do not tile and have more slots ``L`` than this are read as one gather of the whole
``(o, L)`` table and one reduction (``_table``), not a chain of ``L`` steps, whose compile time
grows with ``L`` (88 s for ``L = 501``)."""


def _bounded(w: AxisWindows) -> bool:
    """Whether the windows are read as a whole ``(o, L)`` table: they tile, or they are long."""
    return w.tiles or w.index.shape[1] > LONG_WINDOW


def _table(x: jax.Array, axis: int, w: AxisWindows) -> jax.Array:
    """The ``(o, L)`` slots of the windows at ``axis``: a reshape when they tile, else one gather of
    ``index`` (whose slots past a window's end repeat its last input: no new maximum, and never a
    first one)."""
    if w.tiles:
        return _tiles(x, axis, w)
    table = _take(x, w.index.reshape(-1), axis)
    return table.reshape((*x.shape[:axis], *w.index.shape, *x.shape[axis + 1 :]))


def _max_along(x: jax.Array, axis: int, w: AxisWindows) -> jax.Array:
    """Each window's maximum along ``axis`` (NaN where it holds a NaN), for the forward pass alone."""
    if _bounded(w):
        return jnp.max(_table(x, axis, w), axis=axis + 1)
    return functools.reduce(jnp.maximum, (_take(x, w.index[:, k], axis) for k in range(w.index.shape[1])))


def _first_of(a: tuple[jax.Array, jax.Array], b: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
    """Of two ``(value, slot)`` pairs, the larger value (NaN above all), and among equal values the
    lower slot: a total order, so the reduction's order cannot change its result (``jnp.argmax``'s
    reducer keeps whichever NaN it meets in its own order)."""
    (a_value, a_slot), (b_value, b_slot) = a, b
    a_nan, b_nan = jnp.isnan(a_value), jnp.isnan(b_value)
    same = (a_value == b_value) | (a_nan & b_nan)
    a_first = (a_value > b_value) | (a_nan & ~b_nan) | (same & (a_slot < b_slot))
    return jnp.where(a_first, a_value, b_value), jnp.where(a_first, a_slot, b_slot)


def _first_max(x: jax.Array, axis: int, w: AxisWindows) -> jax.Array:
    """Each window's winner ``k*_i`` along ``axis``: its first slot holding the maximum, or its first
    NaN, in the order ``_first_of``.

    Windows that tile, and long ones (``LONG_WINDOW``): one reduction over
    the ``(o, L)`` table (``_table``). Others: a chain, one gather and one
    ``_first_of`` per slot, materialised.
    """
    x = lax.stop_gradient(x)
    dtype = _winner_dtype(w.index.shape[1])
    if _bounded(w):
        values = _table(x, axis, w)
        slots = lax.broadcasted_iota(dtype, values.shape, axis + 1, out_sharding=jax.typeof(values).sharding)
        last = np.array(np.iinfo(dtype).max, dtype)
        return lax.reduce((values, slots), (max_identity(x.dtype), last), _first_of, (axis + 1,))[1]
    best = _take(x, w.index[:, 0], axis)
    winner = jnp.zeros_like(best, dtype)
    for k in range(1, w.index.shape[1]):
        best, winner = _first_of((best, winner), (_take(x, w.index[:, k], axis), jnp.full_like(winner, k)))
    return _materialised(winner, axis)


def _materialised(winner: jax.Array, axis: int) -> jax.Array:
    """``winner`` (``>= 0``) as the maximum of ``[winner, 0]``: a reduction, which XLA:CPU computes
    once, where it fuses an elementwise chain into each consumer (and it drops
    ``lax.optimization_barrier``). The backward pass reads each winner ``R`` times
    (``_to_winners``); recomputing the chain there made a training step 5x slower."""
    return jnp.max(jnp.stack([winner, jnp.zeros_like(winner)], axis=axis + 1), axis=axis + 1)


def _at_winners(x: jax.Array, winner: jax.Array, axis: int, w: AxisWindows) -> jax.Array:
    """``X[s_i + k*_i]`` along ``axis``: each window's winning input, one gather, which JAX's
    autodiff differentiates by sending the gradient to the winner."""
    start = _at(w.index[:, 0].astype(np.int32), axis, x.ndim)
    return jnp.take_along_axis(x, start + winner.astype(jnp.int32), axis=axis, mode="promise_in_bounds")


SHORT_ROW = 32
"""Rows (the elements after the pooled axis) shorter than this, and than the windows' ``L + 1``, take
the max rule's gradient back by a scatter; others by gathers (see ``_to_winners``)."""


def _to_winners(g: jax.Array, winner: jax.Array, axis: int, w: AxisWindows) -> jax.Array:
    """Each input sums ``G[i]`` over the windows ``i`` whose winner it is.

    Windows that tile: ``G[i]`` where the slot is the winner, a reshape. Others:
    input ``h`` gathers ``G`` from the at most ``R`` windows holding it, where it
    wins (O(n R) per row); or, where a row (the elements after ``axis``) is
    shorter than ``SHORT_ROW`` and at most ``L + 1``, one scatter-add of ``G[i]``
    to ``s_i + k*_i`` (O(o) per row). On XLA:CPU gathers of short rows lose
    their vector loads: with 8 channels and windows of 7 to 113 inputs the
    scatter was 1.1-3x faster, with fewer inputs or 64 channels 1.2-5x slower.
    """
    zero = jnp.zeros((), g.dtype)
    if w.tiles:
        offsets = _at(np.arange(w.index.shape[1], dtype=winner.dtype), axis + 1, g.ndim + 1)
        hit = jnp.expand_dims(winner, axis + 1) == offsets
        return _untile(jnp.where(hit, jnp.expand_dims(g, axis + 1), zero), axis)
    row = math.prod(g.shape[axis + 1 :])
    if row < SHORT_ROW and row <= w.index.shape[1] + 1:
        others = tuple(d for d in range(g.ndim) if d != axis)
        dims = lax.ScatterDimensionNumbers(
            update_window_dims=(),
            inserted_window_dims=(axis,),
            scatter_dims_to_operand_dims=(axis,),
            operand_batching_dims=others,
            scatter_indices_batching_dims=others,
        )
        position = _at(w.index[:, 0].astype(np.int32), axis, g.ndim) + winner.astype(jnp.int32)
        shape = (*g.shape[:axis], w.holder.shape[0], *g.shape[axis + 1 :])
        mode = lax.GatherScatterMode.PROMISE_IN_BOUNDS
        return lax.scatter_add(jnp.zeros(shape, g.dtype), position[..., None], g, dims, mode=mode)
    total = None
    for r in range(w.holder.shape[1]):
        hit = _take(winner, w.holder[:, r], axis) == _at(w.offset[:, r].astype(winner.dtype), axis, g.ndim)
        term = jnp.where(hit, _take(g, w.holder[:, r], axis), zero)
        total = term if total is None else total + term
    return total


def _max_and_winners(config: AdaptiveConfig, x: jax.Array) -> tuple[jax.Array, tuple[jax.Array, ...]]:
    """The maxima, read at each pooled axis's winners (last axis first), and the winners."""
    winners = []
    for axis, w in _pooled_axes(config):
        winners.append(_first_max(x, axis, w))
        x = _at_winners(x, winners[-1], axis, w)
    return x, tuple(winners)


def adaptive_max_pool_forward(config: AdaptiveConfig, x: jax.Array) -> jax.Array:
    """Each window's maximum along each pooled axis, last axis first, read at the window's winner
    so that JAX's autodiff (the ``grad="autodiff"`` reference) sends the gradient there, the custom
    rule's tie rule (``jnp.max`` would split it among tied inputs)."""
    return _max_and_winners(config, x)[0]


def _max_values(config: AdaptiveConfig, x: jax.Array) -> jax.Array:
    """Each window's maximum along each pooled axis, as reductions: the primal of the hand-written rules."""
    for axis, w in _pooled_axes(config):
        x = _max_along(x, axis, w)
    return x


def _max_fwd(config: AdaptiveConfig, x: jax.Array) -> tuple[jax.Array, tuple[jax.Array, ...]]:
    # The maxima read at the winners, as the autodiff path: higher-order derivatives differentiate
    # this function, so its output must follow ``x`` (the winners' reduction does not).
    return _max_and_winners(config, x)


def _max_bwd(config: AdaptiveConfig, winners: tuple[jax.Array, ...], g: jax.Array) -> tuple[jax.Array]:
    """``dL/dX[h] = sum_{i : s_i + k*_i = h} G[i]`` along each pooled axis, first axis first.

    Along one axis ``Y[i] = max_k X[s_i + k]`` is, near ``X``, the input at the
    window's winner ``k*_i``: its derivative is 1 there and 0 elsewhere, and an
    input that wins several windows sums their gradients. The winners are
    those the forward pass saved per axis (the first maximum, or first NaN,
    of each window; ``int8`` for windows up to 127); taken last axis first
    they pick the first maximum of the whole window in scan order, the rule
    of [`funcnn.ops.pool.max_pool`][funcnn.ops.pool.max_pool].
    """
    for (axis, w), winner in zip(reversed(_pooled_axes(config)), reversed(winners)):
        g = _to_winners(g, winner, axis, w)
    return (g,)


def _max_jvp(config: AdaptiveConfig, winners: tuple[jax.Array, ...], tangents: tuple[jax.Array]) -> jax.Array:
    """``dY[i] = dX[s_i + k*_i]`` along each pooled axis, last axis first: each window's winner's
    tangent (the transpose of ``_max_bwd``'s routing)."""
    t = tangents[0]
    for (axis, w), winner in zip(_pooled_axes(config), winners):
        t = _at_winners(t, winner, axis, w)
    return t


ADAPTIVE_MAX_RULES = HandWritten(
    "adaptive_max_pool", _max_values, _max_fwd, _max_bwd, _max_jvp, autodiff=adaptive_max_pool_forward
)
"""Adaptive max pooling's hand-written rules."""


def apply_adaptive_avg_pool(config: AdaptiveConfig, x: jax.Array, grad: str) -> jax.Array:
    """Adaptive average pooling for a resolved ``config`` of a floating ``x``."""
    return ADAPTIVE_AVG_RULES.select(grad)(config, x)


def apply_adaptive_max_pool(config: AdaptiveConfig, x: jax.Array, grad: str) -> jax.Array:
    """Adaptive max pooling for a resolved ``config`` of a floating ``x``."""
    return ADAPTIVE_MAX_RULES.select(grad)(config, x)


def adaptive_avg_pool(
    x: jax.Array, output_size: int | Sequence[int | None], *, grad: str | None = None
) -> jax.Array:
    """Adaptive average pooling of ``x`` ``(N, *spatial, C)`` to ``output_size``, as PyTorch's
    ``AdaptiveAvgPool{1,2,3}d``.

    Output ``i`` along an axis of length ``n`` is the mean of inputs
    ``floor(i n / o)`` to ``ceil((i + 1) n / o) - 1``. Integer and bool
    inputs are averaged in the default float.

    Args:
      x: the input ``(N, *spatial, C)``, channels last, with 1 to 3 non-empty spatial axes.
      output_size: the output's spatial sizes: one positive int for every spatial axis, or one
        entry per spatial axis, each a positive int or ``None`` (keeping that axis' size); larger
        than the input repeats inputs (windows of one or two).
      grad: ``"custom"`` (the hand-written rule ``dL/dX = A^T G``, and its JVP),
        ``"custom_vjp"`` (the rule through ``jax.custom_vjp``, reverse mode only) or
        ``"autodiff"``; ``None`` takes the mode in force
        ([`funcnn.grad_mode`][funcnn.core.grad_mode], ``"custom"`` outside it).

    Returns:
      The window means, ``(N, *out_spatial, C)`` with ``out_spatial`` the ``output_size`` (``x``'s
        size where an entry is ``None``), in ``x``'s dtype (the default float for an integer or bool
        ``x``).

    Raises:
      LayerConfigError: when the op is called (at trace time under ``jit``) if ``grad`` is not
        ``None``, ``"custom"``, ``"custom_vjp"`` or ``"autodiff"``; ``output_size`` is not a
        positive int nor 1 to 3 entries each a positive int or ``None`` (bools refused); ``x`` is
        not an array or a number or has a complex or non-numeric dtype; ``x`` does not have rank
        3, 4 or 5 or has an empty spatial axis; or ``output_size`` has a number of entries other
        than ``x``'s spatial rank.

    Examples:
        >>> adaptive_avg_pool(jnp.arange(5.0).reshape(1, 5, 1), 3)[0, :, 0]
        Array([0.5, 2. , 3.5], dtype=float32)
    """
    checks.grad_mode("adaptive_avg_pool", grad)
    output_size = adaptive_args("adaptive_avg_pool", output_size)
    x = checks.input_array("adaptive_avg_pool", x)
    config = resolve_adaptive("adaptive_avg_pool", output_size, x.shape)
    return apply_adaptive_avg_pool(config, x, grad)


def adaptive_max_pool(
    x: jax.Array, output_size: int | Sequence[int | None], *, grad: str | None = None
) -> jax.Array:
    """Adaptive max pooling of ``x`` ``(N, *spatial, C)`` to ``output_size``, as PyTorch's
    ``AdaptiveMaxPool{1,2,3}d``.

    The backward pass sends each output's gradient to the first maximum of
    its window in scan (row-major) order, as ``max_pool``; a window holding
    a NaN sends it to its first NaN. Integer and bool inputs are promoted to
    the default float.

    Args:
      x: the input ``(N, *spatial, C)``, channels last, with 1 to 3 non-empty spatial axes.
      output_size: the output's spatial sizes: one positive int for every spatial axis, or one
        entry per spatial axis, each a positive int or ``None`` (keeping that axis' size).
      grad: ``"custom"`` (the hand-written rule and its JVP), ``"custom_vjp"`` (the rule through
        ``jax.custom_vjp``, reverse mode only) or ``"autodiff"``; ``None`` takes the mode in force
        ([`funcnn.grad_mode`][funcnn.core.grad_mode], ``"custom"`` outside it).

    Returns:
      The window maxima (NaN for a window holding a NaN), ``(N, *out_spatial, C)`` with
        ``out_spatial`` the ``output_size`` (``x``'s size where an entry is ``None``), in ``x``'s
        dtype (the default float for an integer or bool ``x``).

    Raises:
      LayerConfigError: when the op is called (at trace time under ``jit``) if ``grad`` is not
        ``None``, ``"custom"``, ``"custom_vjp"`` or ``"autodiff"``; ``output_size`` is not a
        positive int nor 1 to 3 entries each a positive int or ``None`` (bools refused); ``x`` is
        not an array or a number or has a complex or non-numeric dtype; ``x`` does not have rank
        3, 4 or 5 or has an empty spatial axis; or ``output_size`` has a number of entries other
        than ``x``'s spatial rank.

    Examples:
        >>> adaptive_max_pool(jnp.array([1.0, 4.0, 2.0, 0.0, 3.0]).reshape(1, 5, 1), 3)[0, :, 0]
        Array([4., 4., 3.], dtype=float32)
    """
    checks.grad_mode("adaptive_max_pool", grad)
    output_size = adaptive_args("adaptive_max_pool", output_size)
    x = checks.input_array("adaptive_max_pool", x)
    config = resolve_adaptive("adaptive_max_pool", output_size, x.shape)
    return apply_adaptive_max_pool(config, x, grad)
