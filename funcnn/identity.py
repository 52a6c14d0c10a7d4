"""Layer identity: a layer's name and children, kept beside the ``(init, apply)`` pair.

``Layer`` stays a two-field NamedTuple (``init_fn, apply_fn = layer`` unpacks as in stax), so the identity
lives in a registry keyed by the layer's ``init`` function: [`make_layer`][funcnn.identity.make_layer] builds
a layer and registers it; [`layer_name`][funcnn.identity.layer_name] and
[`layer_children`][funcnn.identity.layer_children] read it back. A user's own ``Layer(init, apply)`` pair
composes with everything and is called ``"Layer"``, or what [`make_layer`][funcnn.identity.make_layer] names
it; combinators hold it registered as ``"Layer"`` ([`registered`][funcnn.identity.registered]), so it has its
own row in ``summary`` like any other child.

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
from funcnn.core import ApplyFn, InitFn, Layer, LayerConfigError, Shape


class LayerInfo(NamedTuple):
    """What a layer is: its constructor's name and, for combinators, its children.

    Attributes:
      name: the name [`make_layer`][funcnn.identity.make_layer] registered (``"Conv"``, ``"serial"``);
        ``"Layer"`` for a pair it did not build.
      children: the sub-layers of a combinator, in order; ``()`` for other layers.
    """

    name: str
    children: tuple[Layer, ...] = ()


FlopsFn = Callable[[Any, Any, Any], int]
"""``flops(input_shape, output_shape, params) -> int``: a layer's own floating-point operations for
one example of its forward pass, from its shapes (``params``' leaves need only ``.shape``)."""


class InitRecord(NamedTuple):
    """One ``init`` call seen while recording: its depth in the call tree and what it built.

    Attributes:
      depth: its depth in the call tree: 0 for an ``init`` called directly inside
        [`recording_inits`][funcnn.identity.recording_inits], 1 for one its ``init`` calls, ...
      name: the layer's registered name.
      output_shape: the output shape its ``init`` returned.
      params: the scalars in the parameters it returned, its children's included.
      state: the scalars in the state it returned, its children's included.
      input_shape: the input shape it was given, as checked (a tuple of ints, or a tuple of them).
      param_shapes: the parameter tree with ``jax.ShapeDtypeStruct`` leaves.
      flops: the FLOPs function ([`FlopsFn`][funcnn.identity.FlopsFn]) the layer registered with
        [`make_layer`][funcnn.identity.make_layer], not a count; ``None`` when it registered none.
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


def _check_layer_parts(name: Any, init: Any, apply: Any, children: Any, inputs: Any, flops: Any) -> None:
    """``make_layer``'s arguments, checked when the layer is built (not at its first ``init``)."""
    if not isinstance(name, str) or not name:
        raise LayerConfigError(f"make_layer: argument `name` must be a non-empty string, got {name!r}")
    for argument, value in (("init", init), ("apply", apply), ("flops", flops)):
        if not callable(value) and (argument != "flops" or value is not None):
            raise LayerConfigError(
                f"{name}: argument `{argument}` of make_layer must be callable, got {value!r}"
            )
    if not isinstance(children, tuple) or not all(isinstance(child, Layer) for child in children):
        raise LayerConfigError(
            f"{name}: argument `children` of make_layer must be a tuple of layers, got {children!r}"
        )
    if not isinstance(inputs, str) or inputs not in checks.INPUTS:
        raise LayerConfigError(
            f"{name}: argument `inputs` of make_layer must be one of {checks.INPUTS}, got {inputs!r}"
        )


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

    This is how to write your own layer: write its ``init`` and ``apply`` and pass them here, and
    it gets a name (in ``summary``, error messages and parameter labels) and the key and
    input-shape checks of funcnn's own layers.

    Args:
      name: the constructor's name (``"Scale"``): the layer's row in ``summary``, the prefix of
        its error messages and its part of the parameter labels ([`funcnn.labels`][funcnn.labels]).
      init: your ``init(key, input_shape) -> (output_shape, params, state)``, given a checked key
        and shape, so it need not check them; ``params`` and ``state`` are pytrees of arrays, ``()``
        when there are none.
      apply: your ``apply(params, state, x, *, key=None, train=False) -> (y, new_state)``; it is
        always called with the keywords ``key`` and ``train``, and returns ``state`` unchanged
        when the layer has none.
      children: the sub-layers of a combinator, ``()`` for other layers; your ``init`` and
        ``apply`` still call them. Give them in the order of the combinator's params, a tuple
        with one entry per child, which the labels then name by child; pass each through
        [`registered`][funcnn.identity.registered] so that it has its own row in ``summary``.
      inputs: what ``init`` accepts as ``input_shape``: ``"one"`` shape (the default), ``"many"``
        (a non-empty tuple of shapes, one per branch), ``"branches"`` (a non-empty tuple whose entries
        are each one shape or a tuple of shapes) or ``"any"`` (one shape or many, passed on as given);
        see [`funcnn.checks.input_shape`][funcnn.checks.input_shape].
      flops: the layer's own FLOPs for one example ([`FlopsFn`][funcnn.identity.FlopsFn], the
        convention of [`funcnn.shapes.summary`][funcnn.shapes.summary]), a combinator's without
        its children's; ``None`` counts 0 (activations, normalisation, reshapes).

    Shapes:
      Input what ``inputs`` allows: one shape ``(N, ...)``, ``N`` either ``-1`` or positive and every
        other size positive, or a non-empty tuple of such shapes.
      Output the ``output_shape`` that ``init`` returns, unchanged.

    Returns:
      The layer, a [`Layer`][funcnn.core.Layer] ``(init, apply)`` pair registered under ``name`` and
      ``children`` ([`layer_name`][funcnn.identity.layer_name],
      [`layer_children`][funcnn.identity.layer_children]). Its ``init`` checks ``key`` and
      ``input_shape``, then calls the given ``init`` with the shape as a tuple of ints (a list is
      converted) and returns what that returns; inside
      [`recording_inits`][funcnn.identity.recording_inits] it also records the call. Its ``apply``
      calls the given ``apply`` with the same arguments and returns what that returns; inside
      [`tapping`][funcnn.identity.tapping] it also records the output. Both keep the docstrings
      of the functions given.

    Raises:
      LayerConfigError: at construction, when ``name`` is not a non-empty string, ``init``, ``apply`` or a
        non-``None`` ``flops`` is not callable, a child is not a ``Layer``, or ``inputs`` is not ``"one"``,
        ``"many"``, ``"branches"`` or ``"any"``. At ``init``: when ``key`` is not one ``jax.random`` key (a
        typed ``jax.random.key(0)`` or a legacy ``PRNGKey``), or ``input_shape`` is not what ``inputs``
        allows: not a non-empty tuple or list of ints, a size below 1 other than a batch of ``-1``, a tuple of
        shapes where one shape is expected or the reverse, or sizes that ``jax.jit`` traced (pass the shape as
        a static argument).

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from funcnn.identity import layer_name, make_layer
        >>> def Scale():
        ...     def init(key, input_shape):
        ...         return input_shape, {"scale": jnp.ones(input_shape[-1])}, ()
        ...     def apply(params, state, x, *, key=None, train=False):
        ...         return x * params["scale"], state
        ...     return make_layer("Scale", init, apply)
        >>> layer = Scale()
        >>> out_shape, params, state = layer.init(jax.random.key(0), [-1, 3])
        >>> layer_name(layer), out_shape, layer.apply(params, state, jnp.ones((2, 3)))[0].shape
        ('Scale', (-1, 3), (2, 3))
    """

    _check_layer_parts(name, init, apply, children, inputs, flops)

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
    """Record the output of every registered layer applied inside the block ([`Tap`][funcnn.identity.Tap]).

    The recording is done by Python as ``apply`` runs: calls run eagerly or traced inside the
    block record (traced ones record tracers), a call of an already compiled ``jax.jit`` function
    records nothing. [`funcnn.taps.features`][funcnn.taps.features] is built on it.

    Yields:
      The [`Tap`][funcnn.identity.Tap]: its ``outputs`` map each layer's path to its output ``y``,
      in call order (``None`` for a call that has not returned or raised).
    """
    tap = Tap()
    token = _TAP.set(tap)
    try:
        yield tap
    finally:
        _TAP.reset(token)


def layer_info(layer: Layer) -> LayerInfo:
    """The registered name and children of ``layer``; ``LayerInfo("Layer")`` for an unregistered pair.

    Args:
      layer: any ``Layer`` (``(init, apply)`` pair).

    Returns:
      The [`LayerInfo`][funcnn.identity.LayerInfo] that [`make_layer`][funcnn.identity.make_layer]
      registered for ``layer``; ``LayerInfo("Layer")``, without children, for a pair it did not build.
    """
    return _INFO[layer.init] if _is_registered(layer) else LayerInfo("Layer")


def registered(layer: Layer) -> Layer:
    """``layer`` itself when [`make_layer`][funcnn.identity.make_layer] built it, else the pair registered as
    ``"Layer"``.

    Combinators hold their children registered, so every child records its
    ``init`` (its own row in [`funcnn.shapes.summary`][funcnn.shapes.summary]) and checks its
    key and input shape; the wrapper keeps ``layer``'s ``apply``.

    Args:
      layer: any ``Layer`` (``(init, apply)`` pair).

    Shapes:
      Input those ``layer.init`` accepts; the wrapper itself allows one shape or a non-empty tuple of
        shapes (``inputs="any"`` of [`make_layer`][funcnn.identity.make_layer]).
      Output ``layer.init``'s output shape, unchanged.

    Returns:
      ``layer`` itself when it is registered; else a new layer named ``"Layer"``, without
      children, whose ``init`` checks its arguments, records itself and calls ``layer.init``, and
      whose ``apply`` calls ``layer.apply``.

    Raises:
      LayerConfigError: at the wrapper's ``init``, when ``key`` is not one ``jax.random`` key or
        ``input_shape`` is neither a valid shape nor a non-empty tuple of valid shapes
        ([`make_layer`][funcnn.identity.make_layer]). A registered ``layer`` is returned as it is,
        with its own checks.
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
    """The constructor that built ``layer`` (``"Conv"``, ``"serial"``, ...).

    Args:
      layer: any ``Layer`` (``(init, apply)`` pair).

    Returns:
      The name [`make_layer`][funcnn.identity.make_layer] registered; ``"Layer"`` for a pair it did
      not build.
    """
    return layer_info(layer).name


def layer_children(layer: Layer) -> tuple[Layer, ...]:
    """The sub-layers of a combinator, ``()`` for a plain layer.

    Args:
      layer: any ``Layer`` (``(init, apply)`` pair).

    Returns:
      The ``children`` [`make_layer`][funcnn.identity.make_layer] registered, in order (for
      funcnn's combinators, registered layers: see [`registered`][funcnn.identity.registered]);
      ``()`` for a layer registered without children or not registered.
    """
    return layer_info(layer).children


@contextlib.contextmanager
def recording_inits() -> Iterator[list[InitRecord]]:
    """Record every registered ``init`` called inside the block, in call order (parents first).

    Yields:
      The list of [`InitRecord`][funcnn.identity.InitRecord]s, filled as the block runs: a parent's
      entry is reserved when its ``init`` starts, before its children's, and filled when it
      returns (it stays ``None`` if that ``init`` raised).
    """
    record: list = []
    token = _RECORD.set(record)
    depth_token = _DEPTH.set(0)
    try:
        yield record
    finally:
        _RECORD.reset(token)
        _DEPTH.reset(depth_token)
