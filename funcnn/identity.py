"""Layer identity: a layer's name and children, kept beside the ``(init, apply)`` pair.

``Layer`` stays a two-field NamedTuple (``init_fn, apply_fn = layer`` unpacks
as in stax), so the identity lives in a registry keyed by the layer's
``init`` function: [`make_layer`][funcnn.identity.make_layer] builds a layer and registers it;
[`layer_name`][funcnn.identity.layer_name] and [`layer_children`][funcnn.identity.layer_children] read it
back. A user's own
``Layer(init, apply)`` pair composes with everything and is called
``"Layer"``, or what [`make_layer`][funcnn.identity.make_layer] names it; combinators hold it
registered as ``"Layer"`` ([`registered`][funcnn.identity.registered]), so it has its own row in
``summary`` like any other child.

The ``init`` that [`make_layer`][funcnn.identity.make_layer] returns checks its ``key`` and
``input_shape`` (one place for every layer) and, while
[`recording_inits`][funcnn.identity.recording_inits] is active (in
[`funcnn.shapes.summary`][funcnn.shapes.summary] only),
records each layer's input and output shapes, parameters, state and
FLOPs count, nested as the calls are, much as Flax's ``tabulate``
intercepts module calls.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import weakref
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import jax

from funcnn import checks
from funcnn.core import ApplyFn, InitFn, Layer, Shape


class LayerInfo(NamedTuple):
    """What a layer is: its constructor's name and, for combinators, its children."""

    name: str
    children: tuple[Layer, ...] = ()


FlopsFn = Callable[[Any, Any, Any], int]
"""``flops(input_shape, output_shape, params) -> int``: a layer's own floating-point operations for
one example of its forward pass, from its shapes (``params``' leaves need only ``.shape``)."""


class InitRecord(NamedTuple):
    """One ``init`` call seen while recording: its depth in the call tree and what it built.

    ``params`` and ``state`` count scalars; ``param_shapes`` is the params tree
    with ``jax.ShapeDtypeStruct`` leaves; ``flops`` is the count the layer
    registered ([`make_layer`][funcnn.identity.make_layer]), ``None`` when it registered none.
    """

    depth: int
    name: str
    output_shape: Any
    params: int
    state: int
    input_shape: Any = None
    param_shapes: Any = ()
    flops: FlopsFn | None = None


_INFO: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_RECORD: contextvars.ContextVar[list | None] = contextvars.ContextVar("funcnn_init_record", default=None)
_DEPTH: contextvars.ContextVar[int] = contextvars.ContextVar("funcnn_init_depth", default=0)


def _size(tree: Any) -> int:
    return sum(math.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(tree))


def make_layer(
    name: str,
    init: InitFn,
    apply: ApplyFn,
    children: tuple[Layer, ...] = (),
    *,
    inputs: str = "one",
    flops: FlopsFn | None = None,
) -> Layer:
    """A named ``Layer`` whose ``init`` checks its arguments.

    Args:
      name: the constructor's name, for ``summary`` and error messages.
      init: ``init(key, input_shape)``, given a checked key and shape.
      apply: ``apply(params, state, x, *, key=None, train=False)``.
      children: the sub-layers of a combinator.
      inputs: ``"one"`` shape, ``"many"`` (a tuple of shapes) or ``"any"``;
        see [`funcnn.checks.input_shape`][funcnn.checks.input_shape].
      flops: the layer's own FLOPs for one example ([`FlopsFn`][funcnn.identity.FlopsFn], the
        convention of [`funcnn.shapes.summary`][funcnn.shapes.summary]), a combinator's without
        its children's; ``None`` counts 0 (activations, normalisation, reshapes).
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
        param_shapes = jax.tree_util.tree_map(
            lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype), params
        )
        record[index] = InitRecord(
            depth, name, out_shape, _size(params), _size(state), shape, param_shapes, flops
        )
        return out_shape, params, state

    checked_init.__doc__ = init.__doc__
    _INFO[checked_init] = LayerInfo(name, tuple(children))
    return Layer(checked_init, _tapped(name, apply))


class Tap:
    """What [`tapping`][funcnn.identity.tapping] records: every registered layer's output, by its path.

    A path is the layer's label prefix in [`funcnn.labels`][funcnn.labels]' form: the root's
    name, then ``INDEX:NAME`` per level, the index counting the parent's calls
    of its children (their positions, for ``serial``, ``parallel`` and
    ``residual``, which call each child once, in order).
    """

    def __init__(self) -> None:
        self.outputs: dict[str, Any] = {}
        self._stack: list[list[Any]] = []  # [path, children called so far]

    def enter(self, name: str) -> str:
        """A layer's call begins: its path, entered in call order (parents before children)."""
        if self._stack:
            parent = self._stack[-1]
            path = f"{parent[0]}/{parent[1]}:{name}"
            parent[1] += 1
        else:
            path = name
        self._stack.append([path, 0])
        self.outputs[path] = None
        return path

    def leave(self) -> None:
        """The innermost layer's call ends."""
        self._stack.pop()


_TAP: contextvars.ContextVar[Tap | None] = contextvars.ContextVar("funcnn_tap", default=None)


def _tapped(name: str, apply: ApplyFn) -> ApplyFn:
    """``apply``, recording its output while [`tapping`][funcnn.identity.tapping] is active (a check at trace
    time only)."""

    def tapped_apply(params: Any, state: Any, x: Any, *, key: Any = None, train: bool = False) -> Any:
        tap = _TAP.get()
        if tap is None:
            return apply(params, state, x, key=key, train=train)
        path = tap.enter(name)
        try:
            y, new_state = apply(params, state, x, key=key, train=train)
        finally:
            tap.leave()
        tap.outputs[path] = y
        return y, new_state

    tapped_apply.__doc__ = apply.__doc__
    return tapped_apply


@contextlib.contextmanager
def tapping() -> Iterator[Tap]:
    """Record the output of every registered layer applied inside the block ([`Tap`][funcnn.identity.Tap])."""
    tap = Tap()
    token = _TAP.set(tap)
    try:
        yield tap
    finally:
        _TAP.reset(token)


def layer_info(layer: Layer) -> LayerInfo:
    """The registered name and children of ``layer``; ``LayerInfo("Layer")`` for an unregistered pair."""
    return _INFO[layer.init] if _is_registered(layer) else LayerInfo("Layer")


def registered(layer: Layer) -> Layer:
    """``layer`` itself when [`make_layer`][funcnn.identity.make_layer] built it, else the pair registered as
    ``"Layer"``.

    Combinators hold their children registered, so every child records its
    ``init`` (its own row in [`funcnn.shapes.summary`][funcnn.shapes.summary]) and checks its
    key and input shape; the wrapper keeps ``layer``'s ``apply``.
    """
    if _is_registered(layer):
        return layer
    return make_layer("Layer", layer.init, layer.apply, inputs="any")


def _is_registered(layer: Layer) -> bool:
    try:
        return layer.init in _INFO
    except TypeError:  # an init that cannot be weakly referenced was never registered
        return False


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
