"""Combinators: build layers out of layers (stax style, pure ``(init, apply)`` pairs).

Each combinator derives a sub-layer's key as ``jax.random.fold_in(key, index)``,
so adding a layer never changes the keys of the layers before it. Parameters
and state of a combinator are tuples with one entry per sub-layer.

Examples:
    >>> import jax, funcnn as fn
    >>> model = fn.serial(fn.Conv(8, 3), fn.Relu(), fn.Flatten(), fn.Dense(10))
    >>> shape, params, state = model.init(jax.random.key(0), (-1, 28, 28, 1))
    >>> shape
    (-1, 10)
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from funcnn import checks
from funcnn.core import Layer, LayerConfigError, Shape
from funcnn.identity import layer_name, make_layer, registered
from funcnn.shapes import num_neurons


def _sub_key(combinator: str, key: jax.Array | None, index: int) -> jax.Array | None:
    if key is None:
        return None
    checks.check_key(combinator, key)
    return jax.random.fold_in(key, index)


def _check_count(combinator: str, argument: str, given: Any, expected: int, what: str = "entries") -> None:
    """``given`` is a tuple or list of ``expected`` entries, one per layer."""
    if not isinstance(given, (tuple, list)):
        kind = f"an array of shape {tuple(given.shape)}" if hasattr(given, "shape") else type(given).__name__
        raise LayerConfigError(
            f"{combinator}: argument `{argument}` must be a tuple of {expected} {what} (one per layer), "
            f"got {kind}"
        )
    if len(given) != expected:
        raise LayerConfigError(
            f"{combinator}: argument `{argument}` has {len(given)} entries but there are {expected} layers"
        )


def _apply_child(combinator: str, index: int, layer: Layer, params, state, x, key, train):
    """Apply sub-layer ``index``; its new state must have the structure of the state it was given.

    A layer that changes its state's structure would break ``scan`` carries
    and ``jit`` caching, so this is checked at trace time.
    """
    y, new_state = layer.apply(params, state, x, key=_sub_key(combinator, key, index), train=train)
    given = jax.tree_util.tree_structure(state)
    returned = jax.tree_util.tree_structure(new_state)
    if given != returned:
        raise LayerConfigError(
            f"{combinator}: argument `state` of layer {index} ({layer_name(layer)}) has structure "
            f"{given}, but the layer returned a state of structure {returned}"
        )
    return y, new_state


def _serial_init(layers: tuple[Layer, ...]):
    def init(key, input_shape):
        params, states = [], []
        shape = input_shape
        for index, layer in enumerate(layers):
            shape, layer_params, layer_state = layer.init(jax.random.fold_in(key, index), shape)
            params.append(layer_params)
            states.append(layer_state)
        return shape, tuple(params), tuple(states)

    return init


def _serial_apply(combinator: str, layers: tuple[Layer, ...]):
    def apply(params, state, x, *, key=None, train=False):
        _check_count(combinator, "params", params, len(layers), "params")
        _check_count(combinator, "state", state, len(layers), "states")
        new_states = []
        for index, (layer, layer_params, layer_state) in enumerate(zip(layers, params, state)):
            x, new_state = _apply_child(combinator, index, layer, layer_params, layer_state, x, key, train)
            new_states.append(new_state)
        return x, tuple(new_states)

    return apply


def serial(*layers: Layer) -> Layer:
    """Compose layers in sequence: ``serial(f, g)(x) = g(f(x))``.

    ``apply`` checks that every layer returns a state of the structure it was given.

    Args:
      *layers: the layers, applied first to last; ``Layer`` s or ``(init, apply)`` pairs. None at all
        gives the identity.

    Shapes:
      Input the shape the first layer takes, one shape or a tuple of shapes; each layer's output
      shape is the next one's input shape.
      Output the last layer's output shape (the input shape when ``layers`` is empty).

    Returns:
      The layer, an ``(init, apply)`` pair whose params and state are tuples with one entry per layer.

    Raises:
      LayerConfigError: at construction, when an argument is not a layer (e.g. ``Relu`` for
        ``Relu()``); when ``apply`` is traced, when ``params`` or ``state`` is not a tuple (or list)
        of one entry per layer, when a ``key`` given is not one PRNG key (checked as it is handed to
        each layer: ``serial()`` ignores it), or when a layer returns a state of another tree
        structure than it was given. A layer's own errors pass through.
    """
    layers = tuple(map(registered, checks.layers("serial", layers)))
    return make_layer("serial", _serial_init(layers), _serial_apply("serial", layers), layers, inputs="any")


def parallel(*layers: Layer) -> Layer:
    """Apply layer ``i`` to input ``i`` of a tuple: ``(x_1, ..., x_n) -> (f_1(x_1), ..., f_n(x_n))``.

    Args:
      *layers: the branches, one per input, at least one; ``Layer`` s or ``(init, apply)`` pairs.

    Shapes:
      Input a tuple of ``n`` entries, one per layer (e.g. from ``fan_out(n)``): a shape, or a tuple of
      shapes for a branch that takes several inputs (``parallel(fan_in_sum(), Relu())``).
      Output the tuple of the layers' output shapes, ``layers[i]`` mapping input shape ``i``.

    Returns:
      The layer, an ``(init, apply)`` pair whose params and state are tuples with one entry per layer.

    Raises:
      LayerConfigError: at construction, when no layer is given or an argument is not a layer; at
        ``init``, when ``input_shape`` is not a tuple of as many shapes as there are layers; when
        ``apply`` is traced, when ``x``, ``params`` or ``state`` is not a tuple (or list) of one
        entry per layer, when a ``key`` given is not one PRNG key, or when a layer returns a state of
        another tree structure than it was given. A layer's own errors pass through.
    """
    layers = tuple(map(registered, checks.layers("parallel", layers)))
    if not layers:
        raise LayerConfigError("parallel: arguments `*layers` must hold at least one layer, got none")

    def init(key, input_shape):
        _check_count("parallel", "input_shape", input_shape, len(layers), "shapes")
        outs = [
            layer.init(jax.random.fold_in(key, i), s) for i, (layer, s) in enumerate(zip(layers, input_shape))
        ]
        shapes, params, states = zip(*outs)
        return tuple(shapes), tuple(params), tuple(states)

    def apply(params, state, x, *, key=None, train=False):
        _check_count("parallel", "x", x, len(layers), "arrays")
        _check_count("parallel", "params", params, len(layers), "params")
        _check_count("parallel", "state", state, len(layers), "states")
        outs = [
            _apply_child("parallel", i, layer, p, s, xi, key, train)
            for i, (layer, p, s, xi) in enumerate(zip(layers, params, state, x))
        ]
        ys, new_states = zip(*outs)
        return tuple(ys), tuple(new_states)

    return make_layer("parallel", init, apply, layers, inputs="branches")


def fan_out(n: int) -> Layer:
    """Copy the input ``n`` times: ``x -> (x, ..., x)``.

    Args:
      n: the number of copies, a positive int.

    Shapes:
      Input one shape ``S``, any rank.
      Output the tuple ``(S, ..., S)`` of ``n`` shapes.

    Returns:
      The layer, an ``(init, apply)`` pair without params or state.

    Raises:
      LayerConfigError: at construction, when ``n`` is not a positive int; at ``init``, when the
        input shape is a tuple of shapes; when ``apply`` is traced, when ``params`` is not empty or
        ``x`` is not one real-valued array.
    """
    n = checks.positive_int("fan_out", "n", n)

    def init(key, input_shape):
        return (tuple(input_shape),) * n, (), ()

    def apply(params, state, x, *, key=None, train=False):
        checks.no_params("fan_out", params)
        return (checks.as_array("fan_out", x),) * n, state

    return make_layer("fan_out", init, apply)


def _branches(combinator: str, x: Any) -> tuple[jax.Array, ...]:
    """``fan_in_*``'s input: a non-empty tuple of arrays, brought to one dtype
    ([`funcnn.checks.common_dtype`][funcnn.checks.common_dtype])."""
    if not isinstance(x, (tuple, list)) or not x:
        kind = f"an array of shape {tuple(x.shape)}" if hasattr(x, "shape") else type(x).__name__
        raise LayerConfigError(
            f"{combinator}: argument `x` must be a non-empty tuple of arrays (e.g. from fan_out or "
            f"parallel), got {kind}"
        )
    arrays = [checks.as_array(combinator, xi) for xi in x]
    dtype = checks.common_dtype([a.dtype for a in arrays])
    return tuple(a.astype(dtype) for a in arrays)


def _check_same_shapes(
    combinator: str, argument: str, shapes: tuple[Shape, ...], skip_axis: int | None = None
) -> None:
    def key(shape):
        dims = list(shape)
        if skip_axis is not None:
            del dims[skip_axis]
        return tuple(dims)

    if any(len(s) != len(shapes[0]) or key(s) != key(shapes[0]) for s in shapes):
        what = "shapes" if skip_axis is None else f"shapes outside axis {skip_axis}"
        held = "arrays" if argument == "x" else "shapes"
        raise LayerConfigError(
            f"{combinator}: argument `{argument}` must be a tuple of {held} with equal {what}, "
            f"got shapes {tuple(tuple(s) for s in shapes)}"
        )


def fan_in_sum() -> Layer:
    """Sum a tuple of equally shaped inputs: ``(x_1, ..., x_n) -> x_1 + ... + x_n``.

    The inputs are cast to one dtype first
    ([`funcnn.checks.common_dtype`][funcnn.checks.common_dtype]), the output's.

    Shapes:
      Input a tuple of equal shapes ``(S, ..., S)``, the batch entry included (``-1`` and a fixed batch do not
      match). Output ``S``.

    Returns:
      The layer, an ``(init, apply)`` pair without params or state.

    Raises:
      LayerConfigError: at ``init``, when ``input_shape`` is not a tuple of shapes or the shapes
        differ; when ``apply`` is traced, when ``params`` is not empty, ``x`` is not a non-empty
        tuple (or list) of real-valued arrays, or their shapes differ.
    """

    def init(key, input_shape):
        _check_same_shapes("fan_in_sum", "input_shape", input_shape)
        return input_shape[0], (), ()

    def apply(params, state, x, *, key=None, train=False):
        checks.no_params("fan_in_sum", params)
        x = _branches("fan_in_sum", x)
        _check_same_shapes("fan_in_sum", "x", tuple(xi.shape for xi in x))
        return sum(x[1:], start=x[0]), state

    def flops(input_shape, output_shape, params):  # one addition per element for each input after the first
        return (len(input_shape) - 1) * num_neurons(output_shape[1:])

    return make_layer("fan_in_sum", init, apply, inputs="many", flops=flops)


def fan_in_concat(axis: int = -1) -> Layer:
    """Concatenate a tuple of inputs along ``axis`` (the channels by default).

    The inputs are cast to one dtype first
    ([`funcnn.checks.common_dtype`][funcnn.checks.common_dtype]), the output's.

    Args:
      axis: the axis to join along, negative counting from the end; ``-1`` (the default) is the
        channels.

    Shapes:
      Input a tuple of shapes of one rank, equal outside ``axis``.
      Output the first shape with its ``axis`` entry the sum of the inputs' (``-1`` if any of them
      is ``-1``, e.g. joining along the batch).

    Returns:
      The layer, an ``(init, apply)`` pair without params or state.

    Raises:
      LayerConfigError: at construction, when ``axis`` is not an int; at ``init``, when
        ``input_shape`` is not a tuple of shapes, ``axis`` is out of range for the first one, or the
        shapes differ in rank or outside ``axis``; when ``apply`` is traced, the same checks on
        ``x``'s arrays, and when ``params`` is not empty or ``x`` is not a non-empty tuple (or list)
        of real-valued arrays.
    """
    if not checks.is_int(axis):
        raise LayerConfigError(f"fan_in_concat: argument `axis` must be an integer, got {axis!r}")

    def init(key, input_shape):
        shapes = input_shape
        checks.axis_in_range("fan_in_concat", "axis", axis, shapes[0])
        _check_same_shapes("fan_in_concat", "input_shape", shapes, skip_axis=axis)
        out = list(shapes[0])
        sizes = [s[axis] for s in shapes]
        out[axis] = -1 if -1 in sizes else sum(sizes)  # an unknown batch stays unknown
        return tuple(out), (), ()

    def apply(params, state, x, *, key=None, train=False):
        checks.no_params("fan_in_concat", params)
        x = _branches("fan_in_concat", x)
        shapes = tuple(xi.shape for xi in x)
        checks.axis_in_range("fan_in_concat", "axis", axis, shapes[0])
        _check_same_shapes("fan_in_concat", "x", shapes, skip_axis=axis)
        return jnp.concatenate(x, axis=axis), state

    return make_layer("fan_in_concat", init, apply, inputs="many")


def residual(*layers: Layer) -> Layer:
    """A skip connection: ``x -> x + serial(*layers)(x)``; the body must keep the shape.

    ``x`` and the body's output are cast to one dtype
    ([`funcnn.checks.common_dtype`][funcnn.checks.common_dtype]) before the addition.

    Args:
      *layers: the body, at least one layer, applied in sequence as by
        [`serial`][funcnn.combinators.serial]; ``Layer`` s or ``(init, apply)`` pairs.

    Shapes:
      Input one shape ``S`` (not a tuple of shapes), flowing through the body as in ``serial``.
      Output ``S``; the body's output shape must equal it.

    Returns:
      The layer, an ``(init, apply)`` pair whose params and state are the body's: tuples with one
      entry per layer.

    Raises:
      LayerConfigError: at construction, when no layer is given or an argument is not a layer; at
        ``init``, when the input shape is a tuple of shapes or the body's output shape differs from
        it; when ``apply`` is traced, ``serial``'s checks, and when ``x`` is not one real-valued
        array or the body's output is not an array of ``x``'s shape. A layer's own errors pass
        through.
    """
    layers = tuple(map(registered, checks.layers("residual", layers)))
    if not layers:
        raise LayerConfigError(
            "residual: arguments `*layers` must hold at least one layer (the body), got none"
        )
    body_init, body_apply = _serial_init(layers), _serial_apply("residual", layers)

    def check_body(input_shape: Any, shape: Any) -> None:
        if not isinstance(shape, tuple) or tuple(shape) != tuple(input_shape):
            raise LayerConfigError(
                f"residual: arguments `*layers` (the body) map shape {tuple(input_shape)} to {shape}; "
                "a residual connection needs them equal"
            )

    def init(key, input_shape):
        shape, params, state = body_init(key, input_shape)
        check_body(input_shape, shape)
        return shape, params, state

    def apply(params, state, x, *, key=None, train=False):
        y, new_state = body_apply(params, state, x, key=key, train=train)
        x = checks.as_array("residual", x)
        check_body(x.shape, tuple(y.shape) if hasattr(y, "shape") else f"a {type(y).__name__}")
        dtype = checks.common_dtype([x.dtype, y.dtype])
        return x.astype(dtype) + y.astype(dtype), new_state

    def flops(input_shape, output_shape, params):  # the skip connection's addition, its body's counted apart
        return num_neurons(output_shape[1:])

    return make_layer("residual", init, apply, layers, flops=flops)
