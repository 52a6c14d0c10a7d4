"""Output-size formulas, padding, neuron and parameter counts: one source each.

Layers and ops call these functions, so a formula lives in exactly one place.

The course formulas, for input size ``n``, kernel (filter) size ``f``, padding
``p`` on each side and stride ``s``:

* VALID, stride 1: ``n - f + 1``.
* General: ``floor((n + 2p - f) / s) + 1``.
* Pooling (no padding): ``floor((n - f) / s) + 1``.

With kernel dilation ``d`` the kernel covers ``d (f - 1) + 1`` inputs, which
replaces ``f`` in the formulas above.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from funcnn.core import Layer, LayerConfigError, Shape

Padding = str | int | Sequence[int] | Sequence[tuple[int, int]]
"""``"VALID"``, ``"SAME"``, an int (both sides of every axis) or ``(low, high)`` pairs."""


def dilated_size(f: int, dilation: int = 1) -> int:
    """The number of inputs a dilated kernel spans: ``d (f - 1) + 1``."""
    return dilation * (f - 1) + 1


def conv_output_size(
    n: int, f: int, stride: int = 1, padding: int | tuple[int, int] = 0, dilation: int = 1
) -> int:
    """Output length of a convolution along one axis.

    ``floor((n + p_lo + p_hi - d (f - 1) - 1) / s) + 1``, which for a symmetric
    padding ``p`` and ``d = 1`` is the course's ``floor((n + 2p - f) / s) + 1``
    and, with ``p = 0, s = 1``, ``n - f + 1``.

    Args:
      n: input length.
      f: kernel length.
      stride: step between windows, ``s``.
      padding: ``p`` on both sides, or a ``(low, high)`` pair.
      dilation: kernel dilation ``d``.

    Returns:
      The output length; zero or negative when the kernel does not fit.

    >>> conv_output_size(28, 3)
    26
    >>> conv_output_size(7, 3, stride=2, padding=1)
    4
    """
    low, high = (padding, padding) if isinstance(padding, int) else padding
    return (n + low + high - dilated_size(f, dilation)) // stride + 1


def pool_output_size(
    n: int, window: int, stride: int | None = None, padding: int | tuple[int, int] = 0
) -> int:
    """Output length of a pooling window along one axis.

    ``floor((n + p_lo + p_hi - f) / s) + 1``; without padding this is the
    course's ``floor((n - f) / s) + 1``. ``stride`` defaults to the window.

    >>> pool_output_size(26, 2)
    13
    """
    return conv_output_size(n, window, window if stride is None else stride, padding)


def same_padding(n: int, f: int, stride: int = 1, dilation: int = 1) -> tuple[int, int]:
    """``(low, high)`` padding that makes the output length ``ceil(n / s)``.

    The total padding is ``max((ceil(n / s) - 1) s + d (f - 1) + 1 - n, 0)``,
    split with the extra element on the high side (as XLA and TensorFlow do).
    For ``s = 1`` and odd ``f`` this is ``p = (f - 1) / 2`` on each side.

    Note: the course's printed SAME formula, ``n + 2p - f + 1`` with a
    further ``+1``, carries a stray ``+1``: with ``p = (f - 1) / 2`` the
    output length is ``n + 2p - f + 1 = n``, and nothing is added after.

    >>> same_padding(28, 3)
    (1, 1)
    >>> same_padding(28, 2, stride=2)
    (0, 0)
    """
    out = -(-n // stride)
    total = max((out - 1) * stride + dilated_size(f, dilation) - n, 0)
    return total // 2, total - total // 2


def normalize_tuple(layer: str, argument: str, value: int | Sequence[int], rank: int) -> tuple[int, ...]:
    """Broadcast an int to ``rank`` entries, or check a sequence has ``rank`` entries."""
    if isinstance(value, (int, np.integer)):
        return (int(value),) * rank
    value = tuple(value)
    if len(value) != rank:
        raise LayerConfigError(
            f"{layer}: argument `{argument}` has {len(value)} entries {value} "
            f"but the input has {rank} spatial dimensions"
        )
    return value


def padding_pairs(
    layer: str,
    padding: Padding,
    spatial: Sequence[int],
    kernel: Sequence[int],
    strides: Sequence[int],
    dilation: Sequence[int],
) -> tuple[tuple[int, int], ...]:
    """Resolve a padding argument to explicit ``(low, high)`` pairs per spatial axis.

    Args:
      layer: the layer's name, for error messages.
      padding: ``"VALID"``, ``"SAME"``, an int, a sequence of ints (one per
        axis, both sides), or a sequence of ``(low, high)`` pairs.
      spatial, kernel, strides, dilation: per-axis input, kernel sizes, strides
        and kernel dilations.
    """
    rank = len(spatial)
    if isinstance(padding, str):
        mode = padding.upper()
        if mode == "VALID":
            return ((0, 0),) * rank
        if mode == "SAME":
            return tuple(same_padding(n, f, s, d) for n, f, s, d in zip(spatial, kernel, strides, dilation))
        raise LayerConfigError(
            f"{layer}: argument `padding` must be 'VALID', 'SAME', an int or (low, high) "
            f"pairs, got {padding!r}"
        )
    if isinstance(padding, (int, np.integer)):
        return ((int(padding), int(padding)),) * rank
    pads = tuple(padding)
    if len(pads) != rank:
        raise LayerConfigError(
            f"{layer}: argument `padding` has {len(pads)} entries {pads} but the input "
            f"has {rank} spatial dimensions (spatial shape {tuple(spatial)})"
        )
    pairs = []
    for p in pads:
        if isinstance(p, (int, np.integer)):
            pairs.append((int(p), int(p)))
        elif len(p) == 2:
            pairs.append((int(p[0]), int(p[1])))
        else:
            raise LayerConfigError(
                f"{layer}: argument `padding` entries must be ints or (low, high) pairs, got {p!r}"
            )
    return tuple(pairs)


def num_neurons(shape: Sequence[int]) -> int:
    """Number of neurons in a layer of one example's shape: ``W * H * C``.

    The course's input-layer count: a 28x28 greyscale image has
    ``28 * 28 * 1 = 784`` input neurons. ``shape`` excludes the batch.

    >>> num_neurons((28, 28, 1))
    784
    """
    return math.prod(shape)


def count_params(params: Any) -> int:
    """Total number of scalars in a pytree of parameters."""
    return sum(int(np.size(leaf)) for leaf in jax.tree_util.tree_leaves(params))


def layer_name(layer: Layer) -> str:
    """The constructor that built ``layer`` (``"Conv"``, ``"serial"``, ...)."""
    return layer.init.__qualname__.split(".")[0]


def summary(layer: Layer, input_shape: Shape, key: jax.Array | None = None) -> str:
    """A printable per-layer table of output shapes and parameter counts.

    Children of ``serial`` are listed one per row; other layers as one row.
    Parameters are built abstractly with ``jax.eval_shape`` (nothing allocated).

    >>> import funcnn as fn
    >>> print(fn.shapes.summary(fn.serial(fn.Dense(4), fn.Relu()), (-1, 3)))  # doctest: +SKIP
    """
    key = jax.random.key(0) if key is None else key
    rows: list[tuple[str, str, str]] = []
    children = getattr(layer.init, "layers", None) if layer_name(layer) == "serial" else None
    if children is None:
        children = (layer,)
    shape = tuple(input_shape)
    total = 0
    for index, child in enumerate(children):
        shape, n = _abstract_init(child, key, shape)
        total += n
        rows.append((f"{index}: {layer_name(child)}", str(shape), f"{n:,}"))
    header = ("layer", "output shape", "params")
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(3)]
    lines = [f"input {tuple(input_shape)}"]
    lines.append("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join((r[0].ljust(widths[0]), r[1].ljust(widths[1]), r[2].rjust(widths[2]))) for r in rows]
    lines.append(f"total params: {total:,}")
    return "\n".join(lines)


def _abstract_init(layer: Layer, key: jax.Array, shape: Shape) -> tuple[Shape, int]:
    """Output shape and parameter count of ``layer``, without allocating parameters."""
    out: list[Shape] = []

    def init(k: jax.Array) -> Any:
        out_shape, params, _ = layer.init(k, shape)
        out.append(out_shape)
        return params

    params = jax.eval_shape(init, key)
    return out[0], sum(math.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(params))
