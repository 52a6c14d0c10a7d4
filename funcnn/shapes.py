"""Output-size formulas, padding, neuron and parameter counts: one source each.

Layers and ops call these functions, so a formula lives in exactly one place.
Argument parsing and checks live in [`funcnn.checks`][funcnn.checks].

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

from funcnn import checks, identity
from funcnn.core import Layer, LayerConfigError, Shape


def dilated_size(f: int, dilation: int = 1) -> int:
    """The number of inputs a dilated kernel spans: ``d (f - 1) + 1``.

    Args:
      f: kernel length.
      dilation: kernel dilation ``d``, the step between kernel taps (1, the default: no dilation).

    Returns:
      The span ``d (f - 1) + 1``; ``f`` when ``d = 1``.
    """
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

    Examples:
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

    Args:
      n: input length.
      window: window length ``f``.
      stride: step between windows, ``s``; ``None`` (the default) uses ``window``.
      padding: ``p`` on both sides, or a ``(low, high)`` pair.

    Returns:
      The output length; zero or negative when the window does not fit.

    Examples:
        >>> pool_output_size(26, 2)
        13
    """
    return conv_output_size(n, window, window if stride is None else stride, padding)


def ceil_pool_output_size(
    n: int, window: int, stride: int | None = None, padding: int | tuple[int, int] = 0, dilation: int = 1
) -> int:
    """Output length of a pooling window along one axis in ceil mode (PyTorch's ``ceil_mode=True``).

    ``ceil((n + p_lo + p_hi - d (f - 1) - 1) / s) + 1``, less one when the last window would start past the
    input and its low padding, ``(out - 1) s >= n + p_lo``: a last, partial window is kept only where it
    starts on an input or on the low padding. It equals the floor formula
    ([`conv_output_size`][funcnn.shapes.conv_output_size]) when ``s`` divides ``n + p_lo + p_hi - d (f - 1) -
    1``. ``stride`` defaults to the window.

    Args:
      n: input length.
      window: window length ``f``.
      stride: step between windows, ``s``; ``None`` (the default) uses ``window``.
      padding: ``p`` on both sides, or a ``(low, high)`` pair.
      dilation: window dilation ``d``.

    Returns:
      The output length. Whether the window fits is not checked (the pooling layers check it): a
      window longer than ``n + p_lo + p_hi`` gives 1 when it is longer by less than ``s``, else zero or
      a negative number.

    Examples:
        >>> ceil_pool_output_size(5, 2), pool_output_size(5, 2)
        (3, 2)
        >>> ceil_pool_output_size(5, 2, padding=1)  # a window starting on the high padding is dropped
        3
    """
    low, high = (padding, padding) if isinstance(padding, int) else padding
    stride = window if stride is None else stride
    out = -(-(n + low + high - dilated_size(window, dilation)) // stride) + 1
    return out - 1 if (out - 1) * stride >= n + low else out


def same_padding(n: int, f: int, stride: int = 1, dilation: int = 1) -> tuple[int, int]:
    """``(low, high)`` padding that makes the output length ``ceil(n / s)``.

    The total padding is ``max((ceil(n / s) - 1) s + d (f - 1) + 1 - n, 0)``,
    split with the extra element on the high side (as XLA and TensorFlow do).
    For ``s = 1`` and odd ``f`` this is ``p = (f - 1) / 2`` on each side.

    Note: the course's seed prints the output size as
    ``[(n + 2p - f + 1)/s] + 1``; its inner ``+ 1`` is stray (the outer one
    counts the first window). With it, SAME at stride 1 would give ``n + 1``;
    the output length is ``floor((n + 2p - f) / s) + 1``, which with
    ``p = (f - 1) / 2`` and ``s = 1`` is ``n``.

    Args:
      n: input length.
      f: kernel (or window) length.
      stride: step between windows, ``s``.
      dilation: kernel dilation ``d``.

    Returns:
      ``(low, high)``, both non-negative, ``high`` equal to ``low`` or ``low + 1``.

    Examples:
        >>> same_padding(28, 3)
        (1, 1)
        >>> same_padding(28, 2, stride=2)
        (0, 0)
    """
    out = -(-n // stride)
    total = max((out - 1) * stride + dilated_size(f, dilation) - n, 0)
    return total // 2, total - total // 2


def padding_pairs(
    where: str,
    padding: checks.PaddingSpec,
    spatial: Sequence[int],
    kernel: Sequence[int],
    strides: Sequence[int],
    dilation: Sequence[int],
) -> tuple[tuple[int, int], ...]:
    """A parsed padding ([`funcnn.checks.padding_spec`][funcnn.checks.padding_spec]) as explicit ``(low,
    high)`` pairs, one per spatial axis.

    ``"SAME"`` uses [`same_padding`][funcnn.shapes.same_padding]; ``kernel``, ``strides``
    and ``dilation`` are per axis.

    Args:
      where: the caller's name for the error message, e.g. ``"Conv"``.
      padding: ``"VALID"``, ``"SAME"``, an int (the same on both sides of every axis) or one
        ``(low, high)`` pair per axis, as ``padding_spec`` returns it.
      spatial: the input's spatial sizes, without batch and channels.
      kernel: kernel (or window) length per spatial axis; read for ``"SAME"`` only.
      strides: stride per spatial axis; read for ``"SAME"`` only.
      dilation: dilation per spatial axis; read for ``"SAME"`` only.

    Returns:
      One ``(low, high)`` pair per spatial axis: ``(0, 0)`` for ``"VALID"``, ``(p, p)`` for an int
      ``p``, explicit pairs as given.

    Raises:
      LayerConfigError: when ``padding`` holds explicit pairs and their number differs from
        ``len(spatial)``.
    """
    rank = len(spatial)
    if padding == "VALID":
        return ((0, 0),) * rank
    if padding == "SAME":
        axes = zip(spatial, kernel, strides, dilation, strict=True)
        return tuple(same_padding(n, f, s, d) for n, f, s, d in axes)
    if isinstance(padding, int):
        return ((padding, padding),) * rank
    if len(padding) != rank:
        raise LayerConfigError(
            f"{where}: argument `padding` has {len(padding)} entries {padding} but the input "
            f"has {rank} spatial dimensions (spatial shape {tuple(spatial)})"
        )
    return padding


def num_neurons(shape: Sequence[int]) -> int:
    """Number of neurons in a layer of one example's shape: ``W * H * C``.

    The course's input-layer count: a 28x28 greyscale image has
    ``28 * 28 * 1 = 784`` input neurons. ``shape`` excludes the batch.

    Args:
      shape: one example's shape, without the batch, e.g. ``(H, W, C)``.

    Returns:
      The product of the entries of ``shape`` (1 for ``()``).

    Examples:
        >>> num_neurons((28, 28, 1))
        784
    """
    return math.prod(shape)


def count_params(params: Any) -> int:
    """Total number of scalars in a pytree of parameters.

    Args:
      params: a pytree of arrays, e.g. the params or the state ``init`` returns; a leaf that is a
        Python number counts 1.

    Returns:
      The sum of the leaves' sizes; 0 for a tree without leaves such as ``()``.
    """
    return sum(int(np.size(leaf)) for leaf in jax.tree_util.tree_leaves(params))


def _first_shape(shape: Any) -> Shape:
    """``shape``, or the first of a tuple of shapes (a pool's ``(y, indices)``, ``fan_in_sum``'s inputs)."""
    return shape[0] if shape and isinstance(shape[0], (tuple, list)) else shape


def _example_size(shape: Any) -> int:
    """Scalars in one example of ``shape`` (of its first shape for a tuple of shapes)."""
    return num_neurons(_first_shape(shape)[1:])


def dot_flops(input_shape: Any, output_shape: Any, params: Any) -> int:
    """``Conv`` and ``Dense``: 2 x multiply-accumulates, each output element a sum of
    ``prod(kernel.shape[:-1])`` products (``kh kw C_in / groups`` for a convolution, padding taps
    included; ``C_in`` for ``Dense``).

    A [`funcnn.identity.FlopsFn`][funcnn.identity.FlopsFn].

    Args:
      input_shape: the layer's input shape (not read).
      output_shape: the layer's output shape, batch first (the first shape of a tuple of shapes).
      params: the layer's params (leaves need only ``.shape``), with a ``"kernel"`` entry whose last
        axis is the output features.

    Returns:
      ``2 prod(output_shape[1:]) prod(kernel.shape[:-1])``, the FLOPs for one example.

    Examples:
        >>> kernel = {"kernel": np.zeros((3, 3, 1, 32))}
        >>> dot_flops((-1, 28, 28, 1), (-1, 26, 26, 32), kernel)  # 2 * 26*26*32 * 9
        389376
    """
    return 2 * _example_size(output_shape) * math.prod(params["kernel"].shape[:-1])


def conv_transpose_flops(input_shape: Any, output_shape: Any, params: Any) -> int:
    """``ConvTranspose``: 2 x multiply-accumulates, each input element times ``kh kw C_out / groups``
    kernel taps: ``2 prod(input spatial) prod(kernel.shape)`` (no products with the zeros
    that dilate the input).

    A [`funcnn.identity.FlopsFn`][funcnn.identity.FlopsFn].

    Args:
      input_shape: the layer's input shape ``(N, *spatial, C_in)``.
      output_shape: the layer's output shape (not read).
      params: the layer's params (leaves need only ``.shape``), with a ``"kernel"`` entry.

    Returns:
      ``2 prod(spatial) prod(kernel.shape)``, the FLOPs for one example.
    """
    return 2 * num_neurons(input_shape[1:-1]) * math.prod(params["kernel"].shape)


def pool_flops(window: int | Sequence[int]) -> identity.FlopsFn:
    """``MaxPool`` and ``AvgPool`` of ``window`` (an int or one entry per spatial axis): one
    operation (compare or add) per window element per output element.

    Args:
      window: the pooling window, an int (the same on every spatial axis) or one length per spatial
        axis.

    Returns:
      A [`funcnn.identity.FlopsFn`][funcnn.identity.FlopsFn]
      ``flops(input_shape, output_shape, params)`` giving ``prod(window) prod(output_shape[1:])``,
      of the first shape where the output is a tuple of shapes (a pool's ``(y, indices)``).
    """

    def flops(input_shape: Any, output_shape: Any, params: Any) -> int:
        out = _first_shape(output_shape)
        sizes = (window,) * (len(out) - 2) if isinstance(window, int) else window
        return math.prod(sizes) * num_neurons(out[1:])

    return flops


def input_size_flops(input_shape: Any, output_shape: Any, params: Any) -> int:
    """One operation per input element: global pools (each input compared or added once).

    A [`funcnn.identity.FlopsFn`][funcnn.identity.FlopsFn].

    Args:
      input_shape: the layer's input shape, batch first (the first shape of a tuple of shapes).
      output_shape: the layer's output shape (not read).
      params: the layer's params (not read).

    Returns:
      ``prod(input_shape[1:])``, the FLOPs for one example.
    """
    return _example_size(input_shape)


def adaptive_pool_flops(input_shape: Any, output_shape: Any, params: Any) -> int:
    """``AdaptiveAvgPool`` and ``AdaptiveMaxPool``: one operation per window element per output
    element, the windows' lengths along each axis as the op computes them.

    Output ``i`` of ``o`` along an axis of ``n`` inputs pools the window
    ``[floor(i n / o), ceil((i + 1) n / o))`` (PyTorch's), so windows may overlap when ``o`` does not
    divide ``n``. A [`funcnn.identity.FlopsFn`][funcnn.identity.FlopsFn].

    Args:
      input_shape: the layer's input shape ``(N, *spatial, C)``.
      output_shape: the layer's output shape ``(N, *spatial_out, C)``.
      params: the layer's params (not read).

    Returns:
      ``C`` times the product over the spatial axes of the sum of that axis's window lengths, the
      FLOPs for one example.
    """
    from funcnn.ops.adaptive_pool import axis_windows  # funcnn.ops imports this module

    axes = zip(input_shape[1:-1], output_shape[1:-1])
    return math.prod(int(axis_windows(n, o).length.sum()) for n, o in axes) * input_shape[-1]


def _own_flops(entry: identity.InitRecord) -> int:
    """A recorded layer's FLOPs, its children's apart: its registered count (``make_layer(..., flops=)``),
    else 0."""
    if entry.flops is None:
        return 0
    return int(entry.flops(entry.input_shape, entry.output_shape, entry.param_shapes))


def summary(layer: Layer, input_shape: Any, key: jax.Array | None = None) -> str:
    """A printable tree of the layers with output shapes, parameter counts, state sizes and FLOPs.

    Combinators (``serial``, ``parallel``, ``residual``, ...) show their
    children indented beneath them, each row counting its whole subtree;
    the totals split trainable parameters from state (e.g. batch-norm
    statistics), like Flax's ``tabulate`` and Keras' ``summary``. Nothing
    is allocated: ``init`` runs under ``jax.eval_shape``.

    FLOPs are counted analytically from the shapes, for one example (batch 1)
    of the forward pass: ``Conv``, ``ConvTranspose`` and ``Dense`` count 2
    per multiply-accumulate ([`dot_flops`][funcnn.shapes.dot_flops],
    [`conv_transpose_flops`][funcnn.shapes.conv_transpose_flops];
    a convolution's taps on padding included, its bias not counted); pooling
    one per window element per output element ([`pool_flops`][funcnn.shapes.pool_flops], global
    pools one per input element); ``residual`` and ``fan_in_sum`` one per
    added element. Activations, normalisation, dropout, resizing and
    reshapes count 0: they are a few operations per element, small beside
    the convolutions and matrix products. A layer of one's own registers
    its count with ``make_layer(..., flops=...)``
    ([`funcnn.identity.FlopsFn`][funcnn.identity.FlopsFn]). XLA's ``cost_analysis()`` of the
    compiled model counts the skipped elementwise operations too, and only
    the taps that land on the input.

    Args:
      layer: the model, a ``Layer`` or any ``(init, apply)`` pair.
      input_shape: the shape ``init`` is given, batch first (the batch may be ``-1``), or a tuple of
        shapes for a layer that takes several inputs.
      key: the key ``init`` is traced with; ``None`` (the default) uses ``jax.random.key(0)``. The
        table depends only on shapes, so the key does not change it.

    Returns:
      The table as one multi-line string: the input shape, a header, one row per layer (indented by
      depth: name, output shape, params, state, FLOPs) and the three totals.

    Raises:
      LayerConfigError: when ``layer`` is not a layer, or when its ``init`` refuses ``key`` or
        ``input_shape`` (e.g. a rank or size the layers cannot take).

    Examples:
        >>> import funcnn as fn
        >>> print(fn.shapes.summary(fn.serial(fn.Dense(4), fn.Relu()), (-1, 3)))
        input (-1, 3)
        layer       output shape  params  state  FLOPs
        ----------  ------------  ------  -----  -----
        serial      (-1, 4)           16      0     24
          0: Dense  (-1, 4)           16      0     24
          1: Relu   (-1, 4)            0      0      0
        trainable params: 16
        state values:     0
        FLOPs, 1 example: 24
    """
    key = jax.random.key(0) if key is None else key
    root = identity.registered(checks.layer("summary", "argument `layer`", layer))
    with identity.recording_inits() as record:
        jax.eval_shape(lambda k: root.init(k, input_shape)[1:], key)
    own = [_own_flops(entry) for entry in record]
    rows = []
    position: list[int] = []
    for index, entry in enumerate(record):
        del position[entry.depth + 1 :]
        if len(position) <= entry.depth:
            position.append(0)
        else:
            position[entry.depth] += 1
        label = entry.name if entry.depth == 0 else f"{position[entry.depth]}: {entry.name}"
        end = next((j for j in range(index + 1, len(record)) if record[j].depth <= entry.depth), len(record))
        rows.append(
            (
                "  " * entry.depth + label,
                str(entry.output_shape),
                f"{entry.params:,}",
                f"{entry.state:,}",
                f"{sum(own[index:end]):,}",
            )
        )
    header = ("layer", "output shape", "params", "state", "FLOPs")
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    lines = [f"input {input_shape}"]
    lines.append("  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip())
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        cells = [r[0].ljust(widths[0]), r[1].ljust(widths[1])]
        lines.append("  ".join(cells + [cell.rjust(width) for cell, width in zip(r[2:], widths[2:])]))
    lines.append(f"trainable params: {record[0].params:,}")
    lines.append(f"state values:     {record[0].state:,}")
    lines.append(f"FLOPs, 1 example: {sum(own):,}")
    return "\n".join(lines)
