"""Layer identity: a layer's name and children, kept beside the ``(init, apply)`` pair.

``Layer`` stays a two-field NamedTuple (``init_fn, apply_fn = layer`` unpacks
as in stax), so the identity lives in a registry keyed by the layer's
``init`` function: :func:`make_layer` builds a layer and registers it;
:func:`layer_name` and :func:`layer_children` read it back. A user's own
``Layer(init, apply)`` pair composes with everything and is called
``"Layer"``, or what :func:`make_layer` names it.

The ``init`` that :func:`make_layer` returns checks its ``key`` and
``input_shape`` (one place for every layer) and, while
:func:`recording_inits` is active (in :func:`funcnn.shapes.summary` only),
records each layer's output shape, parameters and state, nested as the
calls are, much as Flax's ``tabulate`` intercepts module calls.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import weakref
from collections.abc import Iterator
from typing import Any, NamedTuple

import jax

from funcnn import checks
from funcnn.core import ApplyFn, InitFn, Layer, Shape


class LayerInfo(NamedTuple):
    """What a layer is: its constructor's name and, for combinators, its children."""

    name: str
    children: tuple[Layer, ...] = ()


class InitRecord(NamedTuple):
    """One ``init`` call seen while recording: its depth in the call tree and what it built."""

    depth: int
    name: str
    output_shape: Any
    params: int
    state: int


_INFO: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_RECORD: contextvars.ContextVar[list | None] = contextvars.ContextVar("funcnn_init_record", default=None)
_DEPTH: contextvars.ContextVar[int] = contextvars.ContextVar("funcnn_init_depth", default=0)


def _size(tree: Any) -> int:
    return sum(math.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(tree))


def make_layer(
    name: str, init: InitFn, apply: ApplyFn, children: tuple[Layer, ...] = (), *, inputs: str = "one"
) -> Layer:
    """A named ``Layer`` whose ``init`` checks its arguments.

    Args:
      name: the constructor's name, for ``summary`` and error messages.
      init: ``init(key, input_shape)``, given a checked key and shape.
      apply: ``apply(params, state, x, *, key=None, train=False)``.
      children: the sub-layers of a combinator.
      inputs: ``"one"`` shape, ``"many"`` (a tuple of shapes) or ``"any"``;
        see :func:`funcnn.checks.input_shape`.
    """

    def checked_init(key: jax.Array, input_shape: Shape) -> tuple[Any, Any, Any]:
        checks.check_key(name, key)
        shape = checks.input_shape(name, input_shape, inputs=inputs)
        record = _RECORD.get()
        if record is None:
            return init(key, shape)
        index = len(record)
        record.append(None)
        depth = _DEPTH.get()
        token = _DEPTH.set(depth + 1)
        try:
            out_shape, params, state = init(key, shape)
        finally:
            _DEPTH.reset(token)
        record[index] = InitRecord(depth, name, out_shape, _size(params), _size(state))
        return out_shape, params, state

    checked_init.__doc__ = init.__doc__
    _INFO[checked_init] = LayerInfo(name, tuple(children))
    return Layer(checked_init, apply)


def layer_info(layer: Layer) -> LayerInfo:
    """The registered name and children of ``layer``; ``LayerInfo("Layer")`` for an unregistered pair."""
    try:
        return _INFO.get(layer.init, LayerInfo("Layer"))
    except TypeError:  # an init that cannot be weakly referenced was never registered
        return LayerInfo("Layer")


def layer_name(layer: Layer) -> str:
    """The constructor that built ``layer`` (``"Conv"``, ``"serial"``, ...)."""
    return layer_info(layer).name


def layer_children(layer: Layer) -> tuple[Layer, ...]:
    """The sub-layers of a combinator, ``()`` for a plain layer."""
    return layer_info(layer).children


@contextlib.contextmanager
def recording_inits() -> Iterator[list[InitRecord]]:
    """Record every registered ``init`` called inside the block, in call order (parents first)."""
    record: list = []
    token = _RECORD.set(record)
    depth_token = _DEPTH.set(0)
    try:
        yield record
    finally:
        _RECORD.reset(token)
        _DEPTH.reset(depth_token)
