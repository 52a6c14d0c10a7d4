"""Argument parsing and checks shared by ops, layers, combinators and training: one place each.

Every function here either returns the argument in a canonical form or raises
[`funcnn.core.LayerConfigError`][funcnn.core.LayerConfigError] with a message of the form
``"<where>: argument `<name>` <what is wrong> (<the values and shapes involved>)"``.

Two stages, as in the ops' resolvers:

* **parse** (constructor time, no shapes): [`positive_int`][funcnn.checks.positive_int],
  [`sizes`][funcnn.checks.sizes], [`padding_spec`][funcnn.checks.padding_spec], [`real`][funcnn.checks.real],
  [`boolean`][funcnn.checks.boolean],
  [`dtype_or_none`][funcnn.checks.dtype_or_none], [`initializer`][funcnn.checks.initializer],
  [`precision`][funcnn.checks.precision];
* **resolve** (``init`` or trace time, with shapes): [`broadcast`][funcnn.checks.broadcast],
  [`input_shape`][funcnn.checks.input_shape], [`check_rank`][funcnn.checks.check_rank],
  [`check_width`][funcnn.checks.check_width],
  [`check_leaves`][funcnn.checks.check_leaves], [`as_array`][funcnn.checks.as_array],
  [`input_array`][funcnn.checks.input_array], [`check_key`][funcnn.checks.check_key].

The padding formulas that turn a parsed padding into ``(low, high)`` pairs
live with the other formulas, in [`funcnn.shapes.padding_pairs`][funcnn.shapes.padding_pairs].

The dtype policy ([`compute_dtype`][funcnn.checks.compute_dtype], [`input_array`][funcnn.checks.input_array]):
integer and bool inputs are promoted to the layer's compute dtype before any arithmetic; floating inputs keep
their dtype unless the layer names one; complex inputs are refused.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from numbers import Integral, Real
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from funcnn.core import GRAD_MODES, Layer, LayerConfigError, Shape, default_grad
from funcnn.settings import SETTINGS

Padding = str | int | Sequence[int] | Sequence[tuple[int, int]]
"""``"VALID"``, ``"SAME"``, an int (both sides of every axis) or ``(low, high)`` pairs."""

PaddingSpec = str | int | tuple[tuple[int, int], ...]
"""A parsed padding: ``"VALID"``, ``"SAME"``, one int for every side, or one pair per axis."""


def _describe(value: Any) -> str:
    """``value`` for an error message: arrays by shape and dtype, other objects by repr."""
    if isinstance(value, type):
        return f"the class {value.__module__}.{value.__qualname__}"
    if hasattr(value, "shape") and hasattr(value, "dtype") and not isinstance(value, np.generic):
        return f"an array of shape {tuple(value.shape)} and dtype {value.dtype}"
    return f"{value!r} ({type(value).__name__})"


def is_int(value: Any) -> bool:
    """A Python or NumPy integer, not a bool."""
    return isinstance(value, Integral) and not isinstance(value, (bool, np.bool_))


def setting(where: str, name: str, value: Any) -> Any:
    """A training setting's value, checked by its kind in
    [`funcnn.settings.SETTINGS`][funcnn.settings.SETTINGS] (the
    rule the command line and a run's stored settings follow too); NumPy integers as ``int``."""
    kind = SETTINGS[name].kind
    if not kind.valid(value):
        raise LayerConfigError(f"{where}: argument `{name}` must be {kind.what}, got {_describe(value)}")
    return int(value) if is_int(value) else value


# --- parse: constructor arguments ---------------------------------------------------


def positive_int(where: str, argument: str, value: Any) -> int:
    """``value`` as an ``int`` >= 1; NumPy integers allowed, bools and floats refused."""
    if not is_int(value) or value < 1:
        raise LayerConfigError(
            f"{where}: argument `{argument}` must be a positive integer, got {_describe(value)}"
        )
    return int(value)


def sizes(
    where: str, argument: str, value: Any, *, minimum: int = 1, ranks: Sequence[int] = (1, 2, 3)
) -> int | tuple[int, ...]:
    """An int >= ``minimum`` (broadcast later to the input's rank) or a sequence of them with a
    length in ``ranks``; NumPy integers allowed, bools and floats refused."""
    kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
    if is_int(value):
        if value < minimum:
            raise LayerConfigError(f"{where}: argument `{argument}` must be {kind}, got {value!r}")
        return int(value)
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence | np.ndarray):
        raise LayerConfigError(
            f"{where}: argument `{argument}` must be {kind} or a sequence of them, got {_describe(value)}"
        )
    items = tuple(value)
    if len(items) not in ranks or not all(is_int(v) and v >= minimum for v in items):
        allowed = " or ".join(str(r) for r in ranks)
        raise LayerConfigError(
            f"{where}: argument `{argument}` must be {kind} or {allowed} of them, got {items!r}"
        )
    return tuple(int(v) for v in items)


def padding_spec(where: str, value: Any, *, allow_negative: bool = True) -> PaddingSpec:
    """Parse ``padding``: ``"VALID"``/``"SAME"`` (any case), an int, ints or ``(low, high)`` pairs per axis.

    Negative entries crop (convolutions only; pooling passes ``allow_negative=False``).
    """
    if isinstance(value, str):
        mode = value.upper()
        if mode not in ("VALID", "SAME"):
            raise LayerConfigError(
                f"{where}: argument `padding` must be 'VALID', 'SAME', an int or (low, high) pairs, "
                f"got {value!r}"
            )
        return mode
    if is_int(value):
        pads: tuple[tuple[int, int], ...] | int = int(value)
        flat: tuple[int, ...] = (int(value),)
    elif isinstance(value, Sequence) and not isinstance(value, bytes) and 1 <= len(value) <= 3:
        pairs = []
        for entry in value:
            if is_int(entry):
                pairs.append((int(entry), int(entry)))
            elif isinstance(entry, Sequence) and len(entry) == 2 and all(is_int(e) for e in entry):
                pairs.append((int(entry[0]), int(entry[1])))
            else:
                raise LayerConfigError(
                    f"{where}: argument `padding` entries must be ints or (low, high) pairs of ints, "
                    f"got {entry!r} in {value!r}"
                )
        pads = tuple(pairs)
        flat = tuple(p for pair in pairs for p in pair)
    else:
        raise LayerConfigError(
            f"{where}: argument `padding` must be 'VALID', 'SAME', an int or 1-3 (low, high) pairs, "
            f"got {_describe(value)}"
        )
    if not allow_negative and any(p < 0 for p in flat):
        raise LayerConfigError(f"{where}: argument `padding` must be non-negative, got {value!r}")
    return pads


def grad_mode(where: str, grad: Any) -> str:
    """``grad`` is one of ``GRAD_MODES`` (``"custom"``, ``"custom_vjp"``, ``"autodiff"``); ``None`` is the
    mode in force ([`funcnn.grad_mode`][funcnn.grad_mode], ``"custom"`` outside it)."""
    if grad is None:
        return default_grad()
    if not isinstance(grad, str) or grad not in GRAD_MODES:
        raise LayerConfigError(f"{where}: argument `grad` must be one of {GRAD_MODES}, got {grad!r}")
    return grad


def real(
    where: str,
    argument: str,
    value: Any,
    *,
    low: float = -math.inf,
    high: float = math.inf,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """A real scalar (Python, NumPy or a concrete 0-d array, not a bool) in the given interval."""
    if isinstance(value, jax.core.Tracer):
        raise LayerConfigError(
            f"{where}: argument `{argument}` must be a static number (Python or NumPy), not a traced "
            f"value ({_describe(value)})"
        )
    scalar = value
    if isinstance(value, (np.ndarray, jax.Array)) and value.ndim == 0:
        scalar = value.item()
    if not isinstance(scalar, Real) or isinstance(scalar, (bool, np.bool_)) or not math.isfinite(scalar):
        raise LayerConfigError(
            f"{where}: argument `{argument}` must be a real number, got {_describe(value)}"
        )
    scalar = float(scalar)
    too_low = scalar <= low if low_open else scalar < low
    too_high = scalar >= high if high_open else scalar > high
    if too_low or too_high:
        if math.isinf(high):
            interval = f"{'>' if low_open else '>='} {low:g}"
        else:
            interval = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise LayerConfigError(f"{where}: argument `{argument}` must be {interval}, got {value!r}")
    return scalar


def boolean(where: str, argument: str, value: Any) -> bool:
    """A Python or NumPy bool; a traced one (``jax.jit`` traces its non-static arguments) is
    refused with the fix: make it static."""
    if isinstance(value, jax.core.Tracer):
        function = "apply" if argument == "train" else "f"
        raise LayerConfigError(
            f"{where}: argument `{argument}` must be True or False, got a traced array ({_describe(value)}): "
            f"under jax.jit pass it as a static argument, jax.jit({function}, static_argnames='{argument}')"
        )
    if not isinstance(value, (bool, np.bool_)):
        raise LayerConfigError(
            f"{where}: argument `{argument}` must be True or False, got {_describe(value)}"
        )
    return bool(value)


def axis_name(where: str, value: Any) -> str | tuple[str, ...] | None:
    """``None``, a mesh axis name, or a non-empty tuple of them (as ``lax.pmean`` takes)."""
    names = value if isinstance(value, tuple) else (value,)
    if value is not None and not (names and all(isinstance(n, str) and n for n in names)):
        raise LayerConfigError(
            f"{where}: argument `axis_name` must be None, a mesh axis name or a tuple of them, "
            f"got {_describe(value)}"
        )
    return value


def check_axis_bound(where: str, name: str | tuple[str, ...]) -> None:
    """Each axis of ``name`` is bound here (inside ``shard_map``, ``pmap`` or a named ``vmap``)."""
    for axis in name if isinstance(name, tuple) else (name,):
        try:
            jax.lax.axis_size(axis)
        except NameError:
            raise LayerConfigError(
                f"{where}: argument `axis_name` {axis!r} is not a bound axis here; apply the layer inside "
                f"`jax.shard_map` over a mesh with that axis (or `vmap(..., axis_name={axis!r})`), or pass "
                "axis_name=None: under `jit` with a sharded batch the statistics are already global"
            ) from None


def dtype_or_none(where: str, argument: str, value: Any) -> jnp.dtype | None:
    """``None`` or a floating-point dtype (``jnp.float32``, ``"bfloat16"``, ...) that JAX can hold
    (``float64`` needs ``jax_enable_x64``)."""
    if value is None:
        return None
    try:
        dtype = jnp.dtype(value)
    except TypeError:
        dtype = None
    if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
        raise LayerConfigError(
            f"{where}: argument `{argument}` must be a floating-point dtype such as jnp.float32, "
            f"got {_describe(value)}"
        )
    if jax.dtypes.canonicalize_dtype(dtype) != dtype:
        raise LayerConfigError(
            f"{where}: argument `{argument}` is {dtype}, which JAX holds only with "
            "jax.config.update('jax_enable_x64', True)"
        )
    return dtype


def initializer(where: str, argument: str, value: Any) -> Callable[..., jax.Array]:
    """A ``jax.nn.initializers`` function ``(key, shape, dtype) -> array``."""
    if not callable(value):
        raise LayerConfigError(
            f"{where}: argument `{argument}` must be an initializer such as "
            f"jax.nn.initializers.zeros, got {_describe(value)}"
        )
    return value


def initialised(
    where: str, argument: str, init: Callable[..., Any], key: Any, shape: Shape, dtype: Any
) -> Any:
    """``init(key, shape, dtype)``, checked to be a floating array of ``shape``; an initialiser that
    cannot serve that shape (``orthogonal()`` for a 1-D bias) is named with the shape."""
    try:
        value = init(key, shape, dtype)
    except TypeError as error:
        raise LayerConfigError(
            f"{where}: argument `{argument}` must be called as init(key, shape, dtype) like "
            f"jax.nn.initializers.zeros; calling it for shape {shape} failed: {error}"
        ) from None
    except (ValueError, IndexError) as error:
        raise LayerConfigError(
            f"{where}: argument `{argument}` cannot initialise a parameter of shape {shape}: "
            f"{type(error).__name__}: {error}"
        ) from error
    if callable(value) and not hasattr(value, "shape"):
        raise LayerConfigError(
            f"{where}: argument `{argument}` returned a function for shape {shape}: pass the initializer "
            f"itself, e.g. jax.nn.initializers.{getattr(init, '__name__', 'lecun_normal')}() (called), "
            "not its factory"
        )
    if tuple(getattr(value, "shape", ())) != tuple(shape) or not jnp.issubdtype(
        getattr(value, "dtype", np.dtype(object)), jnp.floating
    ):
        raise LayerConfigError(
            f"{where}: argument `{argument}` must return a floating array of shape {shape}, "
            f"got {_describe(value)}"
        )
    return value


def precision(where: str, value: Any) -> Any:
    """``None``, a ``lax.Precision`` (or its name), a ``lax.DotAlgorithmPreset``, or a pair of them."""
    entries = value if isinstance(value, tuple) and len(value) == 2 else (value,)
    for entry in entries:
        if entry is None or isinstance(entry, (lax.Precision, lax.DotAlgorithmPreset)):
            continue
        try:
            lax.Precision(entry)
        except (ValueError, TypeError):
            raise LayerConfigError(
                f"{where}: argument `precision` must be None, a lax.Precision or its name, got {value!r}"
            ) from None
    return value


def axes(where: str, argument: str, value: Any) -> int | tuple[int, ...]:
    """An axis (any integer) or a non-empty tuple of distinct axes, as ``jax.nn.softmax`` takes (an
    axis given twice in one sign is refused here; ``1`` and ``-3`` can meet only at ``init``)."""
    if is_int(value):
        return int(value)
    if isinstance(value, (tuple, list)) and value and all(is_int(a) for a in value):
        if len(set(value)) < len(value):
            raise LayerConfigError(
                f"{where}: argument `{argument}` must not repeat an axis, got {tuple(value)}"
            )
        return tuple(int(a) for a in value)
    raise LayerConfigError(
        f"{where}: argument `{argument}` must be an integer or a tuple of integers, got {_describe(value)}"
    )


def axis_in_range(where: str, argument: str, axis: int | tuple[int, ...], shape: Shape) -> None:
    """Every entry of ``axis`` indexes ``shape`` (negative from the end), none twice."""
    entries = axis if isinstance(axis, tuple) else (axis,)
    if any(not -len(shape) <= a < len(shape) for a in entries) or len(
        {a % len(shape) for a in entries}
    ) < len(entries):
        raise LayerConfigError(
            f"{where}: argument `{argument}`={axis} is out of range (or repeated) for an input of "
            f"shape {tuple(shape)}"
        )


def layer(where: str, label: str, value: Any) -> Layer:
    """A layer: a ``Layer`` or an ``(init, apply)`` pair of callables; ``label`` names the argument.

    A constructor passed without calling it (``serial(Relu)``) is named with a hint.
    """
    if isinstance(value, tuple) and len(value) == 2 and all(callable(f) for f in value):
        return Layer(*value)
    if isinstance(value, type):
        raise LayerConfigError(f"{where}: {label} is the class `{value.__name__}`, not a layer")
    if callable(value):
        name = getattr(value, "__name__", type(value).__name__)
        if not getattr(value, "__module__", "").startswith("funcnn."):  # not one of our constructors
            raise LayerConfigError(
                f"{where}: {label} is the function `{name}`, not a layer (an (init, apply) pair such as "
                "fn.Relu())"
            )
        required = [
            p
            for p in _parameters(value)
            if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        hint = f"{name}()" if not required else f"{name}(...)"
        raise LayerConfigError(
            f"{where}: {label} is the function `{name}`, not a layer; did you mean `{hint}`?"
        )
    raise LayerConfigError(
        f"{where}: {label} must be a layer (an (init, apply) pair such as fn.Relu()), "
        f"got {type(value).__name__} {value!r:.60}"
    )


def layers(where: str, values: Sequence[Any]) -> tuple[Layer, ...]:
    """Every positional argument of a combinator is a layer ([`layer`][funcnn.checks.layer])."""
    return tuple(layer(where, f"argument {index}", value) for index, value in enumerate(values))


def _parameters(fn: Any) -> list[inspect.Parameter]:
    try:
        return list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return []


# --- resolve: with shapes ----------------------------------------------------------


def broadcast(where: str, argument: str, value: int | tuple[int, ...], rank: int) -> tuple[int, ...]:
    """A parsed size as one entry per spatial axis: an int broadcasts, a tuple must have ``rank`` entries."""
    if isinstance(value, int):
        return (value,) * rank
    if len(value) != rank:
        raise LayerConfigError(
            f"{where}: argument `{argument}` has {len(value)} entries {value} "
            f"but the input has {rank} spatial dimensions"
        )
    return value


INPUTS = ("one", "many", "branches", "any")
"""What a layer's ``init`` may take as ``input_shape``: the kinds ``input_shape`` checks."""


def input_shape(where: str, shape: Any, *, inputs: str = "one") -> Shape | tuple[Shape, ...]:
    """Check an ``init`` input shape: a tuple (or list) of ints, only the batch may be ``-1``.

    ``inputs="one"``: one shape; ``"many"``: a non-empty tuple of shapes (``fan_in_*``);
    ``"branches"``: a non-empty tuple whose entries are each one shape or a tuple of shapes, the
    input of one branch each (``parallel``); ``"any"``: either one shape or many (``serial`` passes
    it on). A shape that ``jax.jit`` traced is refused with the fix: make it static.
    """
    if _traced(shape):
        raise LayerConfigError(
            f"{where}: argument `input_shape` holds traced arrays, not ints: under jax.jit pass it as a "
            "static argument, jax.jit(init, static_argnums=1)"
        )
    is_many = (
        isinstance(shape, (tuple, list))
        and len(shape) > 0
        and all(isinstance(s, (tuple, list)) for s in shape)
    )
    if inputs == "any":
        inputs = "many" if is_many else "one"
    if inputs in ("many", "branches"):
        if not is_many:
            raise LayerConfigError(
                f"{where}: argument `input_shape` must be a tuple of shapes (one per branch), got {shape!r}"
            )
        return tuple(input_shape(where, s, inputs="any" if inputs == "branches" else "one") for s in shape)
    if is_many:
        raise LayerConfigError(
            f"{where}: argument `input_shape` must be one shape such as (-1, 28, 28, 1), got the "
            f"tuple of {len(shape)} shapes {tuple(tuple(s) for s in shape)}; join branches with "
            "fan_in_sum() or fan_in_concat() first"
        )
    if not isinstance(shape, (tuple, list)) or not shape or not all(is_int(d) for d in shape):
        raise LayerConfigError(
            f"{where}: argument `input_shape` must be a non-empty tuple of ints such as "
            f"(-1, 28, 28, 1), got {_describe(shape)}"
        )
    shape = tuple(int(d) for d in shape)
    if not (shape[0] == -1 or shape[0] >= 1) or any(d < 1 for d in shape[1:]):
        raise LayerConfigError(
            f"{where}: argument `input_shape` {shape} must have positive sizes; only the batch "
            "(the first entry) may be -1 (unknown)"
        )
    return shape


def _traced(value: Any) -> bool:
    """``value`` is a tracer or a tuple or list holding one, at any depth."""
    if isinstance(value, (tuple, list)):
        return any(_traced(v) for v in value)
    return isinstance(value, jax.core.Tracer)


@functools.cache
def _legacy_key_shape() -> tuple[int, ...]:
    """The shape of a ``jax.random.PRNGKey`` for the default PRNG implementation ((2,) for threefry)."""
    return tuple(jax.eval_shape(jax.random.PRNGKey, 0).shape)


def check_key(where: str, key: Any) -> None:
    """A ``jax.random`` key: a typed key (``jax.random.key``) or a legacy ``PRNGKey`` uint32 array."""
    dtype = getattr(key, "dtype", None)
    shape = getattr(key, "shape", None)
    if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key) and tuple(shape) == ():
        return
    if dtype == jnp.uint32 and shape is not None and tuple(shape) == _legacy_key_shape():
        return
    if dtype == jnp.uint32:
        detail = f"a raw jax.random.PRNGKey is a uint32 array of shape {_legacy_key_shape()}"
    else:
        detail = "one key, not a batch of keys"
    raise LayerConfigError(
        f"{where}: argument `key` must be a PRNG key such as jax.random.key(0) ({detail}), "
        f"got {_describe(key)}"
    )


def check_rank(where: str, argument: str, shape: Shape, ranks: Sequence[int]) -> None:
    """Raise unless ``len(shape)`` is one of ``ranks``."""
    if len(shape) not in ranks:
        expected = ", ".join(str(r) for r in ranks[:-1]) + (" or " if len(ranks) > 1 else "") + str(ranks[-1])
        raise LayerConfigError(
            f"{where}: argument `{argument}` must have rank {expected}, "
            f"but has shape {tuple(shape)} (rank {len(shape)})"
        )


def check_width(where: str, x_shape: Shape, tree: Any, leaf: str, axis: int, per: int = 1) -> None:
    """``x``'s last axis has the width ``tree[leaf]`` was initialised for (``shape[axis] * per``).

    Skipped when the leaf is missing or not an array: [`check_leaves`][funcnn.checks.check_leaves] reports
    that.
    """
    value = tree.get(leaf) if isinstance(tree, Mapping) else getattr(tree, leaf, None)
    shape = getattr(value, "shape", None)
    if shape is None or not -len(shape) <= axis < len(shape):
        return
    if x_shape[-1] != shape[axis] * per:
        factor = f" x {per} groups" if per != 1 else ""
        hint = ""
        if len(x_shape) > 2 and x_shape[1] == shape[axis] * per:
            hint = "; funcnn is channels-last (NHWC): was x passed channels-first?"
        raise LayerConfigError(
            f"{where}: argument `x` has {x_shape[-1]} channels (x.shape={tuple(x_shape)}) but the layer was "
            f"initialised for {shape[axis]}{factor} (`{leaf}` has shape {tuple(shape)}){hint}"
        )


def check_divides(where: str, argument: str, value: int, what: str, size: int, context: str) -> None:
    """``value`` divides ``size``, e.g. ``groups`` the input channels."""
    if size % value:
        raise LayerConfigError(
            f"{where}: argument `{argument}`={value} does not divide {what} {size} ({context})"
        )


def check_leaves(
    where: str,
    argument: str,
    expected: Mapping[str, Shape],
    actual: Any,
    context: str,
) -> None:
    """Check a params (or state) dict at trace time against the shapes ``init`` builds.

    Args:
      where: the layer's name.
      argument: ``"params"`` or ``"state"``.
      expected: leaf name to the shape ``init`` builds for this input.
      actual: the dict (or NamedTuple) the user passed.
      context: the input the expectation was derived from, for the message.
    """
    if hasattr(actual, "_asdict"):
        actual = actual._asdict()
    if not expected and (actual is None or actual == ()):
        return
    if not isinstance(actual, Mapping):
        raise LayerConfigError(
            f"{where}: argument `{argument}` must hold {sorted(expected)} as init builds it for {context}, "
            f"got {_describe(actual)}"
        )
    for name, shape in expected.items():
        if name not in actual:
            raise LayerConfigError(
                f"{where}: argument `{argument}` has no leaf '{name}' (init builds shape {shape} for "
                f"{context}); its leaves are {sorted(actual)}"
            )
        leaf = actual[name]
        if not hasattr(leaf, "shape"):
            raise LayerConfigError(
                f"{where}: argument `{argument}` leaf '{name}' must be an array of shape {shape}, "
                f"got {_describe(leaf)}"
            )
        if tuple(leaf.shape) != tuple(shape):
            raise LayerConfigError(
                f"{where}: argument `{argument}` leaf '{name}' has shape {tuple(leaf.shape)} but init "
                f"builds {tuple(shape)} for {context}"
            )
    extra = sorted(set(actual) - set(expected))
    if extra:
        raise LayerConfigError(
            f"{where}: argument `{argument}` has unexpected leaves {extra}; init builds {sorted(expected)} "
            f"for {context}"
        )


def default_float() -> jnp.dtype:
    """The default floating dtype: ``float32``, or ``float64`` with ``jax_enable_x64``."""
    return jnp.dtype(jax.dtypes.canonicalize_dtype(jnp.float64))


def compute_dtype(x_dtype: Any, dtype: jnp.dtype | None, fallback: jnp.dtype | None = None) -> jnp.dtype:
    """The dtype a layer computes in: its ``dtype`` if set; else a floating input's own dtype;
    else (integer or bool input) ``fallback`` (the layer's ``param_dtype``) or the default float."""
    if dtype is not None:
        return dtype
    if jnp.issubdtype(x_dtype, jnp.floating):
        return jnp.dtype(x_dtype)
    return fallback if fallback is not None else default_float()


def input_array(
    where: str,
    x: Any,
    dtype: jnp.dtype | None = None,
    *,
    fallback: jnp.dtype | None = None,
    argument: str = "x",
) -> jax.Array:
    """Check an input array ([`as_array`][funcnn.checks.as_array]) and apply the dtype policy: the result is
    in
    [`compute_dtype`][funcnn.checks.compute_dtype] ``(x.dtype, dtype, fallback)``."""
    x = as_array(where, x, argument)
    target = compute_dtype(x.dtype, dtype, fallback)
    return x if x.dtype == target else jnp.asarray(x).astype(target)


def as_array(where: str, x: Any, argument: str = "x") -> Any:
    """Check an input array, keeping its dtype (for layers that do no arithmetic).

    Arrays (NumPy, JAX, tracers) and Python numbers are accepted; tuples and
    lists are refused (a branch tuple needs ``fan_in_*``). Complex and
    non-numeric inputs are refused.
    """
    if isinstance(x, (tuple, list)):
        branches = len(x) > 0 and all(hasattr(e, "shape") for e in x)
        hint = (
            "join branches with fan_in_sum() or fan_in_concat() first"
            if branches
            else "convert it with jnp.asarray"
        )
        raise LayerConfigError(
            f"{where}: argument `{argument}` must be an array, got a {type(x).__name__} of {len(x)} "
            f"entries; {hint}"
        )
    if not (hasattr(x, "shape") and hasattr(x, "dtype")):
        if not isinstance(x, (int, float, np.number)) or isinstance(x, bool):
            raise LayerConfigError(f"{where}: argument `{argument}` must be an array, got {_describe(x)}")
        x = jnp.asarray(x)
    if jnp.issubdtype(x.dtype, jnp.complexfloating):
        raise LayerConfigError(
            f"{where}: argument `{argument}` has complex dtype {x.dtype} (shape {tuple(x.shape)}); "
            "funcnn layers compute in real floating point"
        )
    if not (jnp.issubdtype(x.dtype, jnp.number) or x.dtype == jnp.bool_):
        raise LayerConfigError(
            f"{where}: argument `{argument}` has non-numeric dtype {x.dtype} (shape {tuple(x.shape)})"
        )
    return x


def per_axis(where: str, **values: int | tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    """Parsed sizes broadcast to one common rank, for checks that compare arguments axis by axis.

    The rank is the length of any sequence among ``values`` (1 when all are
    ints); sequences of different lengths are refused.
    """
    lengths = {name: len(v) for name, v in values.items() if isinstance(v, tuple)}
    if len(set(lengths.values())) > 1:
        raise LayerConfigError(
            f"{where}: arguments {', '.join(f'`{n}`' for n in lengths)} have different numbers of "
            f"entries {tuple(values[n] for n in lengths)}"
        )
    rank = next(iter(lengths.values()), 1)
    return {name: broadcast(where, name, v, rank) for name, v in values.items()}


def promote_operands(where: str, names: Sequence[str], *arrays: Any) -> tuple[Any, ...]:
    """The dtype policy for ops: every operand (``None`` skipped) cast to one floating dtype.

    The floating operands' promoted dtype, or the default float when all are
    integers or bools; complex, non-numeric and non-array operands are refused.
    """
    checked = []
    for name, a in zip(names, arrays, strict=True):
        if a is None and name != "bias":
            raise LayerConfigError(f"{where}: argument `{name}` must be an array, got {_describe(a)}")
        checked.append(None if a is None else as_array(where, a, name))
    target = common_dtype(
        [a.dtype for a in checked if a is not None and jnp.issubdtype(a.dtype, jnp.floating)]
    )
    return tuple(a if a is None or a.dtype == target else a.astype(target) for a in checked)


def common_dtype(dtypes: Sequence[Any]) -> jnp.dtype:
    """One dtype for several operands: theirs when they agree, else the widest floating one
    (``float32`` for ``float16`` with ``bfloat16``), else the default float.

    Written out rather than ``jnp.promote_types`` so it holds under strict dtype promotion.
    """
    kinds = {jnp.dtype(d) for d in dtypes}
    if len(kinds) == 1:
        return kinds.pop()
    floating = sorted((d for d in kinds if jnp.issubdtype(d, jnp.floating)), key=lambda d: d.itemsize)
    if not floating:
        return default_float()
    widest = [d for d in floating if d.itemsize == floating[-1].itemsize]
    return widest[0] if len(widest) == 1 else jnp.dtype(jnp.float32)


def optimizer(where: str, value: Any) -> None:
    """An optax ``GradientTransformation``: something with ``init`` and ``update``."""
    if not (callable(getattr(value, "init", None)) and callable(getattr(value, "update", None))):
        raise LayerConfigError(
            f"{where}: argument `optimizer` must be an optax GradientTransformation such as "
            f"optax.adam(1e-3), got {_describe(value)}"
        )


def no_params(where: str, params: Any) -> None:
    """A layer without parameters is given none (``()`` as its ``init`` returns, or ``None``)."""
    if jax.tree_util.tree_leaves(params):
        raise LayerConfigError(
            f"{where}: argument `params` must be empty (the layer has no parameters; init returns ()), "
            f"got {_describe(params)}"
        )


def labelled_data(where: str, argument: str, data: Any) -> tuple[Any, Any]:
    """``(images, labels)``: arrays of equal length, the labels 1-D integers."""
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise LayerConfigError(
            f"{where}: argument `{argument}` must be an (images, labels) pair, got {_describe(data)}"
        )
    images, labels = data
    if not hasattr(images, "shape") or not hasattr(labels, "shape"):
        raise LayerConfigError(
            f"{where}: argument `{argument}` must hold arrays, got {type(images).__name__} and "
            f"{type(labels).__name__}"
        )
    if len(images.shape) < 1 or len(labels.shape) != 1 or images.shape[0] != labels.shape[0]:
        raise LayerConfigError(
            f"{where}: argument `{argument}` has images of shape {tuple(images.shape)} but labels of shape "
            f"{tuple(labels.shape)}; expected one label per image"
        )
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise LayerConfigError(
            f"{where}: argument `{argument}` labels must be integers, got dtype {labels.dtype}"
        )
    return images, labels


def label_range(where: str, argument: str, labels: Any, num_classes: int) -> None:
    """Every label lies in ``[0, num_classes)``, checked on the host before any step runs."""
    values = np.asarray(labels)
    if values.size and (values.min() < 0 or values.max() >= num_classes):
        raise LayerConfigError(
            f"{where}: argument `{argument}` labels must lie in [0, {num_classes}) for a model with "
            f"{num_classes} outputs, got labels from {values.min()} to {values.max()}"
        )


def same_tree(where: str, argument: str, given: Any, expected: Any) -> None:
    """``given`` has the structure, shapes and dtypes of ``expected`` (arrays or shape structs);
    the error names the first leaf that differs, by its key path."""
    given_leaves, given_structure = jax.tree_util.tree_flatten_with_path(given)
    expected_leaves, expected_structure = jax.tree_util.tree_flatten_with_path(expected)
    if given_structure != expected_structure:
        raise LayerConfigError(
            f"{where}: argument `{argument}` has {len(given_leaves)} leaves of structure "
            f"{given_structure}, but the model's has {len(expected_leaves)} of structure {expected_structure}"
        )
    for (path, leaf), (_, want) in zip(given_leaves, expected_leaves):
        got = (tuple(np.shape(leaf)), jnp.result_type(leaf))
        if got != (tuple(want.shape), want.dtype):
            raise LayerConfigError(
                f"{where}: argument `{argument}` leaf {jax.tree_util.keystr(path)} has shape {got[0]} and "
                f"dtype {got[1]}, but the model's has shape {tuple(want.shape)} and dtype {want.dtype}"
            )
