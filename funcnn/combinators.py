"""Combinators: build layers out of layers (stax style, pure ``(init, apply)`` pairs).

Each combinator derives a sub-layer's key as ``jax.random.fold_in(key, index)``,
so adding a layer never changes the keys of the layers before it. Parameters
and state of a combinator are tuples with one entry per sub-layer.

>>> import jax, funcnn as fn
>>> model = fn.serial(fn.Conv(8, 3), fn.Relu(), fn.Flatten(), fn.Dense(10))
>>> shape, params, state = model.init(jax.random.key(0), (-1, 28, 28, 1))
>>> shape
(-1, 10)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from funcnn.core import Layer, LayerConfigError, Shape
from funcnn.shapes import layer_name


def _sub_key(key: jax.Array | None, index: int) -> jax.Array | None:
    return None if key is None else jax.random.fold_in(key, index)


def _check_count(combinator: str, argument: str, given, expected: int) -> None:
    if len(given) != expected:
        raise LayerConfigError(
            f"{combinator}: argument `{argument}` has {len(given)} entries but there are {expected} layers"
        )


def _apply_child(combinator: str, index: int, layer: Layer, params, state, x, key, train):
    """Apply sub-layer ``index``; its new state must have the structure of the state it was given.

    A layer that changes its state's structure would break ``scan`` carries
    and ``jit`` caching, so this is checked at trace time.
    """
    y, new_state = layer.apply(params, state, x, key=_sub_key(key, index), train=train)
    given = jax.tree_util.tree_structure(state)
    returned = jax.tree_util.tree_structure(new_state)
    if given != returned:
        raise LayerConfigError(
            f"{combinator}: layer {index} ({layer_name(layer)}) returned a state of structure "
            f"{returned} but was given {given}"
        )
    return y, new_state


def serial(*layers: Layer) -> Layer:
    """Compose layers in sequence: ``serial(f, g)(x) = g(f(x))``.

    ``apply`` checks that every layer returns a state of the structure it was given.
    """

    def init(key, input_shape):
        params, states = [], []
        shape = input_shape
        for index, layer in enumerate(layers):
            shape, layer_params, layer_state = layer.init(jax.random.fold_in(key, index), shape)
            params.append(layer_params)
            states.append(layer_state)
        return shape, tuple(params), tuple(states)

    def apply(params, state, x, *, key=None, train=False):
        _check_count("serial", "params", params, len(layers))
        _check_count("serial", "state", state, len(layers))
        new_states = []
        for index, (layer, layer_params, layer_state) in enumerate(zip(layers, params, state)):
            x, new_state = _apply_child("serial", index, layer, layer_params, layer_state, x, key, train)
            new_states.append(new_state)
        return x, tuple(new_states)

    init.layers = layers
    return Layer(init, apply)


def parallel(*layers: Layer) -> Layer:
    """Apply layer ``i`` to input ``i`` of a tuple: ``(x_1, ..., x_n) -> (f_1(x_1), ..., f_n(x_n))``."""

    def init(key, input_shape):
        _check_count("parallel", "input_shape", input_shape, len(layers))
        outs = [
            layer.init(jax.random.fold_in(key, i), s) for i, (layer, s) in enumerate(zip(layers, input_shape))
        ]
        shapes, params, states = zip(*outs) if outs else ((), (), ())
        return tuple(shapes), tuple(params), tuple(states)

    def apply(params, state, x, *, key=None, train=False):
        for argument, value in (("x", x), ("params", params), ("state", state)):
            _check_count("parallel", argument, value, len(layers))
        outs = [
            _apply_child("parallel", i, layer, p, s, xi, key, train)
            for i, (layer, p, s, xi) in enumerate(zip(layers, params, state, x))
        ]
        ys, new_states = zip(*outs) if outs else ((), ())
        return tuple(ys), tuple(new_states)

    return Layer(init, apply)


def fan_out(n: int) -> Layer:
    """Copy the input ``n`` times: ``x -> (x, ..., x)``."""
    if not isinstance(n, int) or n < 1:
        raise LayerConfigError(f"fan_out: argument `n` must be a positive integer, got {n!r}")

    def init(key, input_shape):
        return (tuple(input_shape),) * n, (), ()

    def apply(params, state, x, *, key=None, train=False):
        return (x,) * n, state

    return Layer(init, apply)


def _check_same_shapes(combinator: str, shapes: tuple[Shape, ...], skip_axis: int | None = None) -> None:
    def key(shape):
        dims = list(shape)
        if skip_axis is not None:
            del dims[skip_axis]
        return tuple(dims)

    if len(shapes) < 1 or any(len(s) != len(shapes[0]) or key(s) != key(shapes[0]) for s in shapes):
        what = "shapes" if skip_axis is None else f"shapes outside axis {skip_axis}"
        raise LayerConfigError(
            f"{combinator}: argument `x` must be a non-empty tuple of arrays with equal {what}, "
            f"got shapes {tuple(tuple(s) for s in shapes)}"
        )


def fan_in_sum() -> Layer:
    """Sum a tuple of equally shaped inputs: ``(x_1, ..., x_n) -> x_1 + ... + x_n``."""

    def init(key, input_shape):
        _check_same_shapes("fan_in_sum", tuple(input_shape))
        return tuple(input_shape[0]), (), ()

    def apply(params, state, x, *, key=None, train=False):
        _check_same_shapes("fan_in_sum", tuple(xi.shape for xi in x))
        return sum(x[1:], start=x[0]), state

    return Layer(init, apply)


def fan_in_concat(axis: int = -1) -> Layer:
    """Concatenate a tuple of inputs along ``axis`` (the channels by default)."""

    def init(key, input_shape):
        shapes = tuple(tuple(s) for s in input_shape)
        if not shapes or not -len(shapes[0]) <= axis < len(shapes[0]):
            raise LayerConfigError(
                f"fan_in_concat: argument `axis`={axis} is out of range for shapes {shapes}"
            )
        _check_same_shapes("fan_in_concat", shapes, skip_axis=axis)
        out = list(shapes[0])
        sizes = [s[axis] for s in shapes]
        out[axis] = -1 if -1 in sizes else sum(sizes)  # an unknown batch stays unknown
        return tuple(out), (), ()

    def apply(params, state, x, *, key=None, train=False):
        _check_same_shapes("fan_in_concat", tuple(xi.shape for xi in x), skip_axis=axis)
        return jnp.concatenate(x, axis=axis), state

    return Layer(init, apply)


def residual(*layers: Layer) -> Layer:
    """A skip connection: ``x -> x + serial(*layers)(x)``; the body must keep the shape."""
    body = serial(*layers)

    def init(key, input_shape):
        shape, params, state = body.init(key, input_shape)
        if tuple(shape) != tuple(input_shape):
            raise LayerConfigError(
                f"residual: the body maps shape {tuple(input_shape)} to {tuple(shape)}; "
                "a residual connection needs them equal"
            )
        return shape, params, state

    def apply(params, state, x, *, key=None, train=False):
        y, new_state = body.apply(params, state, x, key=key, train=train)
        return x + y, new_state

    return Layer(init, apply)
