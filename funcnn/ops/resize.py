"""Resizing the spatial axes (channels last): nearest, linear and cubic interpolation, with a
hand-written VJP.

``x`` is ``(N, *spatial, C)`` with 1 to 3 spatial axes. Every method is separable: along a spatial
axis of length ``n`` resized to ``m``, output ``d`` is a fixed combination of the inputs,

    Y[d] = sum_i A[d, i] X[i],          A an (m, n) matrix built from n and m alone,

applied to one spatial axis after another. With ``r = n / m`` (PyTorch's ``align_corners=False``
geometry: output pixel centres ``d + 1/2`` mapped onto input pixel centres)::

    nearest         A[d, i] = [i = floor(d r)]                       PyTorch "nearest" (its default)
    nearest-exact   A[d, i] = [i = floor((d + 1/2) r)]               PyTorch "nearest-exact"
    linear          s = max((d + 1/2) r - 1/2, 0), i0 = floor(s), t = s - i0:
                    A[d, i0] += 1 - t,  A[d, min(i0 + 1, n - 1)] += t
    bicubic         s = (d + 1/2) r - 1/2, i0 = floor(s), t = s - i0:
                    A[d, clamp(i0 - 1 + k, 0, n - 1)] += w_k(t),  k = 0..3,
                    w = (W(t + 1), W(t), W(1 - t), W(2 - t)), Keys' kernel W with a = -0.75

(the indices are computed in exact integer arithmetic for the nearest methods). These are
``torch.nn.functional.interpolate(..., align_corners=False)`` with ``mode="nearest"``,
``"nearest-exact"``, ``"linear"``/``"bilinear"``/``"trilinear"`` and ``"bicubic"``, without
antialiasing, for upsampling and downsampling alike; bicubic runs on 1 to 3 spatial axes here
(PyTorch has it for 2 only), as the same kernel along each axis. Two PyTorch roundings are not
copied: for float32 tensors its nearest index is ``floor(float32(d) * float32(n / m))``, one input
lower than the exact index at some sizes (14 -> 92: output 46); and its nearest backward does so
for float64 too, so there its gradient goes to a neighbour of the input its forward read. Here the
index is exact in every dtype and the gradient is the transpose of the forward.

Backward (``G = dL/dY``): the transpose along each axis, in the reverse order of the forward pass,

    dL/dX[i] = sum_d A[d, i] G[d],      i.e.  dL/dX = A^T G  along that axis.

How it is computed: ``A`` is banded (each row's non-zeros are neighbours: 1 for nearest, at most
2 for linear, 4 for bicubic), and so is ``A^T`` (each column's non-zeros are the outputs that read
one input, a run of neighbours). A banded matrix along an axis is applied as a few gathers with
static indices, one per band position ``k``,

    (A X)[d] = sum_k A[d, j_k(d)] X[j_k(d)],      j_k(d) = the k-th column of row d's band,

and ``A^T G`` the same way with the bands of ``A``'s columns. A gather of every output's inputs is
a read; a scatter-add (autodiff's transpose of a gather) or a dense ``dot_general`` with ``A``
(``n`` multiply-adds per output instead of 2 or 4) are several times slower on a CPU; only a band
wider than ``MAX_TAPS`` is applied as a dense ``dot_general``.
Integer nearest upsampling (``m = k n``, ``i(d) = floor(d / k)``) is a repeat of every input ``k``
times (a broadcast and a reshape), and its backward the sum over each block of ``k`` outputs (a
reshape to ``(n, k)`` and a sum).

Where ``jax.image.resize`` differs (its methods use half-pixel centres throughout):

* its ``"nearest"`` rounds ``(d + 1/2) r`` down, which is ``"nearest-exact"`` here, not PyTorch's
  default ``"nearest"`` (``floor(d r)``, which shifts the image by up to half an input pixel);
* its ``"linear"`` equals ``"linear"`` here when upsampling; when downsampling it antialiases
  by default (a wider triangle), and equals ``"linear"`` here only with ``antialias=False``;
* its ``"cubic"`` is Keys' kernel with ``a = -0.5`` and, at the borders, drops the taps that
  fall outside the input and renormalises the rest; ``"bicubic"`` here (PyTorch's) uses ``a = -0.75``
  and repeats the border pixel for those taps.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from funcnn import checks
from funcnn.core import LayerConfigError
from funcnn.ops._rules import HandWritten

METHODS = ("nearest", "nearest-exact", "linear", "bilinear", "trilinear", "bicubic")
"""The accepted ``method`` names; ``"linear"``, ``"bilinear"`` and ``"trilinear"`` are one method
(linear interpolation along every spatial axis), named as PyTorch names it for 1, 2 and 3 axes;
each works for any number of axes."""

_CANONICAL = {"bilinear": "linear", "trilinear": "linear"}

MAX_TAPS = 64
"""The widest band applied as gathers. A wider one, the transpose of an upsampling by more than 32
(linear) or 16 (bicubic), where each input is read by that many outputs, is one dense
``dot_general``: it runs somewhat slower there but compiles in a fraction of the time."""

CUBIC_A = -0.75
"""The free parameter of Keys' cubic convolution kernel in PyTorch's ``"bicubic"``."""


class ResizeConfig(NamedTuple):
    """A resolved resize (hashable, the VJP's static argument): the method and the spatial sizes
    before and after."""

    method: str
    in_spatial: tuple[int, ...]
    out_spatial: tuple[int, ...]


def resize_method(where: str, method: object) -> str:
    """Parse ``method``: one of ``METHODS``, returned in its canonical name
    (``"nearest"``, ``"nearest-exact"``, ``"linear"`` or ``"bicubic"``)."""
    if not isinstance(method, str) or method not in METHODS:
        raise LayerConfigError(f"{where}: argument `method` must be one of {METHODS}, got {method!r}")
    return _CANONICAL.get(method, method)


def _spatial(where: str, x_shape: Sequence[int]) -> tuple[int, ...]:
    """The spatial sizes of an input ``(N, *spatial, C)`` with 1 to 3 non-empty spatial axes."""
    checks.check_rank(where, "x", x_shape, (3, 4, 5))
    spatial = tuple(x_shape[1:-1])
    if any(n < 1 for n in spatial):
        raise LayerConfigError(f"{where}: argument `x` has an empty spatial axis: shape {tuple(x_shape)}")
    return spatial


def _per_axis(where: str, argument: str, value: int | tuple[int, ...], x_shape: Sequence[int]):
    spatial = _spatial(where, x_shape)
    if isinstance(value, tuple) and len(value) != len(spatial):
        raise LayerConfigError(
            f"{where}: argument `{argument}` has {len(value)} entries {value} but the input has "
            f"{len(spatial)} spatial dimensions (input shape {tuple(x_shape)})"
        )
    return spatial, checks.broadcast(where, argument, value, len(spatial))


def resolve_upsample(
    where: str, method: str, scale: int | tuple[int, ...], x_shape: Sequence[int]
) -> ResizeConfig:
    """The resize that multiplies every spatial size by its (integer) ``scale``."""
    spatial, scale = _per_axis(where, "scale", scale, x_shape)
    return ResizeConfig(method, spatial, tuple(n * s for n, s in zip(spatial, scale)))


def resolve_resize(
    where: str, method: str, shape: int | tuple[int, ...], x_shape: Sequence[int]
) -> ResizeConfig:
    """The resize to the spatial ``shape`` (an int for every axis, or one entry per axis)."""
    spatial, shape = _per_axis(where, "shape", shape, x_shape)
    return ResizeConfig(method, spatial, shape)


# --- the per-axis matrices and index maps, from the sizes alone (NumPy, at trace time) ----------


@functools.cache
def nearest_index(method: str, n: int, m: int) -> np.ndarray:
    """The input each output reads: ``floor(d n / m)`` or ``floor((2 d + 1) n / (2 m))``, exactly."""
    d = np.arange(m, dtype=np.int64)
    index = d * n // m if method == "nearest" else (2 * d + 1) * n // (2 * m)
    index = np.minimum(index, n - 1)
    index.flags.writeable = False
    return index


def _cubic_weights(t: np.ndarray) -> np.ndarray:
    """Keys' kernel at the four taps' distances ``t + 1, t, 1 - t, 2 - t``, shape ``(len(t), 4)``."""
    a = CUBIC_A

    def near(z):  # |z| <= 1
        return ((a + 2) * z - (a + 3)) * z * z + 1

    def far(z):  # 1 < |z| < 2
        return ((a * z - 5 * a) * z + 8 * a) * z - 4 * a

    return np.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], axis=1)


@functools.cache
def interpolation_matrix(method: str, n: int, m: int) -> np.ndarray:
    """The ``(m, n)`` float64 matrix ``A`` of ``method`` along one axis: ``Y = A X``."""
    d = np.arange(m, dtype=np.float64)
    rows = np.arange(m)
    matrix = np.zeros((m, n))
    if method in ("nearest", "nearest-exact"):
        matrix[rows, nearest_index(method, n, m)] = 1.0
    elif method == "linear":
        source = np.maximum((d + 0.5) * (n / m) - 0.5, 0.0)
        low = np.floor(source).astype(np.int64)
        t = source - low
        np.add.at(matrix, (rows, low), 1.0 - t)
        np.add.at(matrix, (rows, np.minimum(low + 1, n - 1)), t)
    else:
        source = (d + 0.5) * (n / m) - 0.5
        low = np.floor(source).astype(np.int64)
        weights = _cubic_weights(source - low)
        for k in range(4):
            np.add.at(matrix, (rows, np.clip(low - 1 + k, 0, n - 1)), weights[:, k])
    matrix.flags.writeable = False
    return matrix


class Band(NamedTuple):
    """A banded ``(m, n)`` matrix by rows: ``M[d, index[k, d]] = weight[k, d]``, ``k < K`` (weight 0
    past the end of a row's non-zeros, whose index then repeats a valid one). Taps of weight 0 are
    added as exact zeros, never as ``0 * X``, so an inf or NaN that the matrix does not read stays out."""

    index: np.ndarray
    weight: np.ndarray


def _rows_as_band(matrix: np.ndarray) -> Band:
    """The band of ``matrix``'s rows: each row's non-zeros lie between its first and last one; a
    row of zeros (an input that no output reads, in ``A^T``) reads the columns of the nearest row
    above it that has non-zeros (below, for leading ones), all with weight 0, so that the indices
    stay sorted along the rows wherever the rows' bands are."""
    nonzero = matrix != 0
    empty = ~nonzero.any(axis=1)
    rows = np.arange(matrix.shape[0])
    first = nonzero.argmax(axis=1)
    last = matrix.shape[1] - 1 - nonzero[:, ::-1].argmax(axis=1)
    source = np.maximum.accumulate(np.where(empty, -1, rows))
    source = np.where(source < 0, int(np.argmax(~empty)), source)
    first, last = first[source], last[source]
    columns = [np.minimum(first + k, last) for k in range(int((last - first).max()) + 1)]
    weight = np.stack([np.where(first + k <= last, matrix[rows, j], 0.0) for k, j in enumerate(columns)])
    index = np.stack(columns)
    index.flags.writeable = weight.flags.writeable = False
    return Band(index, weight)


@functools.cache
def band(method: str, n: int, m: int, transpose: bool) -> Band:
    """The band of ``A`` (``transpose=False``, ``m`` rows) or of ``A^T`` (``n`` rows) for ``method``."""
    matrix = interpolation_matrix(method, n, m)
    return _rows_as_band(matrix.T if transpose else matrix)


def repeat_factor(method: str, n: int, m: int) -> int | None:
    """``k`` when nearest resizing from ``n`` to ``m = k n`` repeats each input ``k`` times, else ``None``."""
    if method not in ("nearest", "nearest-exact") or m % n:
        return None
    return m // n if np.array_equal(nearest_index(method, n, m), np.arange(m) // (m // n)) else None


def _axis_order(config: ResizeConfig) -> list[int]:
    """The spatial axes (as axes of ``x``) that change, those that shrink the most first: each axis
    costs the size of its result, so shrinking early is cheaper."""
    changed = [a for a, (n, m) in enumerate(zip(config.in_spatial, config.out_spatial)) if n != m]
    return [a + 1 for a in sorted(changed, key=lambda a: config.out_spatial[a] / config.in_spatial[a])]


# --- along one axis ------------------------------------------------------------------------------


def _apply_rows(x: jax.Array, matrix: np.ndarray, rows: Band, axis: int) -> jax.Array:
    """``Y[d] = sum_i matrix[d, i] X[i]`` along ``axis``: one gather per band position,
    ``Y[d] = sum_k weight[k, d] X[index[k, d]]``, or one dense contraction when the band is wider
    than ``MAX_TAPS``."""
    if rows.index.shape[0] > MAX_TAPS:
        y = lax.dot_general(
            x, jnp.asarray(matrix, x.dtype), (((axis,), (1,)), ((), ())), precision=lax.Precision.HIGHEST
        )
        return jnp.moveaxis(y, -1, axis)
    shape = [1] * x.ndim
    shape[axis] = rows.index.shape[1]
    y = None
    for index, weight in zip(rows.index, rows.weight):
        read = weight != 0
        if not read.any():
            continue
        is_sorted = bool(np.all(np.diff(index) >= 0))
        tap = jnp.take(x, index, axis=axis, indices_are_sorted=is_sorted, mode="clip")
        if not np.all(weight == 1):
            tap = tap * jnp.asarray(weight.reshape(shape), x.dtype)
        if not read.all():  # zero taps as exact zeros: 0 * inf would be NaN
            tap = jnp.where(read.reshape(shape), tap, jnp.zeros((), x.dtype))
        y = tap if y is None else y + tap
    return y


def _repeat(x: jax.Array, axis: int, factor: int) -> jax.Array:
    """``Y[d] = X[floor(d / k)]``: every entry along ``axis`` ``k`` times."""
    repeated = (*x.shape[: axis + 1], factor, *x.shape[axis + 1 :])
    y = jnp.broadcast_to(jnp.expand_dims(x, axis + 1), repeated)
    return y.reshape(*x.shape[:axis], x.shape[axis] * factor, *x.shape[axis + 1 :])


def _sum_blocks(g: jax.Array, axis: int, factor: int) -> jax.Array:
    """``dX[i] = sum_{j < k} G[i k + j]``: the transpose of ``_repeat``."""
    blocks = g.reshape(*g.shape[:axis], g.shape[axis] // factor, factor, *g.shape[axis + 1 :])
    return jnp.sum(blocks, axis=axis + 1)


def resize_forward(config: ResizeConfig, x: jax.Array) -> jax.Array:
    """``Y = A_k ... A_1 X``: each changing spatial axis in turn (those that shrink most first)."""
    for axis in _axis_order(config):
        n, m = config.in_spatial[axis - 1], config.out_spatial[axis - 1]
        factor = repeat_factor(config.method, n, m)
        x = (
            _apply_rows(x, interpolation_matrix(config.method, n, m), band(config.method, n, m, False), axis)
            if factor is None
            else _repeat(x, axis, factor)
        )
    return x


def _resize_fwd(config: ResizeConfig, x: jax.Array) -> tuple[jax.Array, tuple]:
    # The map is linear in x: the rule needs nothing of x, so nothing is saved.
    return resize_forward(config, x), ()


def _resize_bwd(config: ResizeConfig, saved: tuple, g: jax.Array) -> tuple[jax.Array]:
    """``dL/dX = A_1^T ... A_k^T G``: the transpose along each axis, last axis of the forward first.

    Along one axis ``dX[i] = sum_d A[d, i] G[d]``, the outputs ``d`` that read input ``i`` being a run of
    neighbours: one gather of ``G`` per position in the run, weighted by ``A[d, i]``. For nearest, ``A[d, i] =
    [i(d) = i]``: each input gets the sum of the outputs that copy it, for an integer upsampling the sum over
    its block of ``k`` outputs. The cotangent keeps ``G``'s dtype, which is ``x``'s.
    """
    del saved
    for axis in reversed(_axis_order(config)):
        n, m = config.in_spatial[axis - 1], config.out_spatial[axis - 1]
        factor = repeat_factor(config.method, n, m)
        g = (
            _apply_rows(g, interpolation_matrix(config.method, n, m).T, band(config.method, n, m, True), axis)
            if factor is None
            else _sum_blocks(g, axis, factor)
        )
    return (g,)


def _resize_jvp(config: ResizeConfig, saved: tuple, tangents: tuple[jax.Array]) -> jax.Array:
    """``dY = A_k ... A_1 dX``: the map is linear, so its JVP is the map itself."""
    return resize_forward(config, tangents[0])


RESIZE_RULES = HandWritten("resize", resize_forward, _resize_fwd, _resize_bwd, _resize_jvp)
"""Resizing's hand-written rules."""


def apply_resize(config: ResizeConfig, x: jax.Array, grad: str) -> jax.Array:
    """Resize a floating ``x`` by a resolved ``config`` (``resolve_upsample``, ``resolve_resize``)."""
    return RESIZE_RULES.select(grad)(config, x)


def upsample(
    x: jax.Array, scale: int | Sequence[int], method: str = "nearest", *, grad: str | None = None
) -> jax.Array:
    """Upsample the spatial axes of ``x`` ``(N, *spatial, C)`` by integer factors: ``n -> n * scale``.

    Equals ``torch.nn.functional.interpolate(x, scale_factor=scale, mode=method,
    align_corners=False)`` (channels first there). Nearest upsampling repeats every input
    ``scale`` times along each axis; its gradient sums each block. Integer and bool inputs are
    promoted to the default float.

    Args:
      x: the input ``(N, *spatial, C)``, channels last, with 1 to 3 non-empty spatial axes.
      scale: a positive int for every spatial axis, or one per axis. Only integers: for other
        ratios name the output size with [`resize`][funcnn.ops.resize.resize].
      method: ``"nearest"`` (PyTorch's default), ``"nearest-exact"``, ``"linear"`` (also
        spelled ``"bilinear"`` or ``"trilinear"``) or ``"bicubic"``; see the module docstring.
      grad: ``"custom"`` (the hand-written VJP, and its JVP), ``"custom_vjp"`` (the VJP through
        ``jax.custom_vjp``, reverse mode only) or ``"autodiff"``; ``None`` takes the mode in force
        ([`funcnn.grad_mode`][funcnn.core.grad_mode], ``"custom"`` outside it).

    Returns:
      ``(N, *(n * scale), C)``, each spatial size times its scale, in ``x``'s dtype (the default
        float for an integer or bool ``x``).

    Raises:
      LayerConfigError: when the op is called (at trace time under ``jit``) if ``grad`` is not
        ``None``, ``"custom"``, ``"custom_vjp"`` or ``"autodiff"``; ``scale`` is not a positive int or
        1 to 3 of them; ``method`` is not one of the names above; ``x`` is not an array or a number
        or has a complex or non-numeric dtype. Or if the shapes do not fit: ``x`` does not have rank
        3, 4 or 5 or has an empty spatial axis; or ``scale`` has a number of entries other than
        ``x``'s spatial rank.

    Examples:
        >>> import jax.numpy as jnp
        >>> upsample(jnp.arange(2.0).reshape(1, 2, 1), 2)[0, :, 0]
        Array([0., 0., 1., 1.], dtype=float32)
    """
    checks.grad_mode("upsample", grad)
    scale = checks.sizes("upsample", "scale", scale)
    method = resize_method("upsample", method)
    x = checks.input_array("upsample", x)
    return apply_resize(resolve_upsample("upsample", method, scale, x.shape), x, grad)


def resize(
    x: jax.Array, shape: int | Sequence[int], method: str = "nearest", *, grad: str | None = None
) -> jax.Array:
    """Resize the spatial axes of ``x`` ``(N, *spatial, C)`` to ``shape``, up or down.

    Equals ``torch.nn.functional.interpolate(x, size=shape, mode=method, align_corners=False)``
    (channels first there; no antialiasing when downsampling). Integer and bool inputs are
    promoted to the default float.

    Args:
      x: the input ``(N, *spatial, C)``, channels last, with 1 to 3 non-empty spatial axes.
      shape: the output's spatial sizes: one positive int for every axis, or one per axis.
      method: ``"nearest"`` (PyTorch's default), ``"nearest-exact"``, ``"linear"`` (also
        spelled ``"bilinear"`` or ``"trilinear"``) or ``"bicubic"``; see the module docstring.
      grad: ``"custom"`` (the hand-written VJP, and its JVP), ``"custom_vjp"`` (the VJP through
        ``jax.custom_vjp``, reverse mode only) or ``"autodiff"``; ``None`` takes the mode in force
        ([`funcnn.grad_mode`][funcnn.core.grad_mode], ``"custom"`` outside it).

    Returns:
      ``(N, *shape, C)`` in ``x``'s dtype (the default float for an integer or bool ``x``).

    Raises:
      LayerConfigError: when the op is called (at trace time under ``jit``) if ``grad`` is not
        ``None``, ``"custom"``, ``"custom_vjp"`` or ``"autodiff"``; ``shape`` is not a positive int or
        1 to 3 of them; ``method`` is not one of the names above; ``x`` is not an array or a number
        or has a complex or non-numeric dtype. Or if the shapes do not fit: ``x`` does not have rank
        3, 4 or 5 or has an empty spatial axis; or ``shape`` has a number of entries other than
        ``x``'s spatial rank.

    Examples:
        >>> import jax.numpy as jnp
        >>> resize(jnp.array([[[0.0], [1.0]]]), 4, "linear")[0, :, 0]
        Array([0.  , 0.25, 0.75, 1.  ], dtype=float32)
    """
    checks.grad_mode("resize", grad)
    shape = checks.sizes("resize", "shape", shape)
    method = resize_method("resize", method)
    x = checks.input_array("resize", x)
    return apply_resize(resolve_resize("resize", method, shape, x.shape), x, grad)
