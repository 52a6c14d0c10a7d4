"""Weights from PyTorch: a ``state_dict`` into funcnn ``params`` and ``state``.

[`from_torch`][funcnn.interop.from_torch] walks a funcnn model's layer tree depth first, in order,
and the ``state_dict``'s modules in their order (a ``state_dict`` is ordered
as the modules were registered), pairs the layers that have weights with the
modules that have weights, checks the kind and the shapes of each pair and
moves the arrays into funcnn's layouts:

* ``Conv``: PyTorch's weight is ``(O, I/groups, *k)`` (OIHW in 2-D), funcnn's
  kernel ``(*k, I/groups, O)`` (HWIO): ``kernel = weight.transpose(2, 3, 1, 0)``.
* ``ConvTranspose``: PyTorch's weight is ``(I, O/groups, *k)``, funcnn's kernel
  ``(*k, I/groups, O)`` and applied without flipping (the input-dilated
  convolution), so ``kernel[..., a, j*O/g + b] = weight[j*I/g + a, b, ::-1, ::-1]``
  for group ``j``.
* ``Dense``: PyTorch's ``Linear`` weight is ``(out, in)``, funcnn's kernel
  ``(in, out)``: ``kernel = weight.T``. After a ``Flatten`` of an NHWC
  ``(N, H, W, C)`` input, funcnn's features come in ``(h, w, c)`` order and
  PyTorch's (flattening NCHW) in ``(c, h, w)`` order, so the first ``Dense``
  after a ``Flatten`` gets its rows permuted:
  ``kernel = weight.reshape(out, C, H, W).transpose(0, 2, 3, 1).reshape(out, -1).T``.
* ``BatchNorm``: ``weight`` and ``bias`` become ``scale`` and ``bias``;
  ``running_mean`` and ``running_var`` become the state
  [`BatchNormState`][funcnn.layers.BatchNormState] ``(mean, var)``;
  ``num_batches_tracked`` has no counterpart and is dropped.

The other layers (activations, pooling, ``Flatten``, ``Dropout``, ...) have
no weights, and PyTorch's modules without weights have no ``state_dict``
entries, so both sides list the same layers when the two models are built
alike.

**BatchNorm's statistics.** Both normalise in evaluation with
``(x - running_mean) / sqrt(running_var + epsilon)``, so moving the stored
values over gives the same test-time outputs. They are not updated alike:
PyTorch stores the *unbiased* batch variance (``n / (n - 1)`` times the
biased one, ``n`` the values per channel) with
``running = (1 - m) * running + m * batch`` and ``m = 0.1``; funcnn stores the
*biased* batch variance with ``running = momentum * running + (1 - momentum) * batch``
(``momentum=0.99`` by default; ``BatchNorm(momentum=0.9)`` is PyTorch's
``0.1``). Training on in funcnn therefore mixes the two conventions in the
running variance, which shrinks towards the biased one by ``(n - 1) / n``, a
negligible change for large batches. Both default to ``epsilon = 1e-5``
(PyTorch's ``eps``); a PyTorch model built with another ``eps`` needs
``BatchNorm(epsilon=...)`` with the same value.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import DTypeLike

from funcnn.core import Layer, LayerConfigError, Shape
from funcnn.identity import layer_info
from funcnn.layers.norm import BatchNormState

__all__ = [
    "conv_kernel_from_torch",
    "conv_transpose_kernel_from_torch",
    "dense_kernel_from_torch",
    "from_torch",
]

_WHERE = "from_torch"
_TORCH_KIND = {
    "Conv": "convolution",
    "ConvTranspose": "convolution",
    "Dense": "Linear",
    "BatchNorm": "BatchNorm",
}
"""The funcnn layers with weights, and the kind of PyTorch module each takes its weights from."""
_PARAM_NAMES = {"kernel": "weight", "scale": "weight", "bias": "bias"}  # in PyTorch's order
_STATE_NAMES = {"mean": "running_mean", "var": "running_var"}
_DROPPED = ("num_batches_tracked",)


def conv_kernel_from_torch(weight: Any) -> np.ndarray:
    """A PyTorch ``Conv{1,2,3}d`` weight ``(O, I/groups, *k)`` as a funcnn ``Conv`` kernel.

    Args:
      weight: an array of rank 3, 4 or 5 (OIW, OIHW, OIDHW).

    Returns:
      The kernel, channels last (WIO, HWIO, DHWIO): ``weight`` with its axes
      ``(2, ..., n-1, 1, 0)``.
    """
    weight = np.asarray(weight)
    return weight.transpose(*range(2, weight.ndim), 1, 0)


def conv_transpose_kernel_from_torch(weight: Any, groups: int = 1) -> np.ndarray:
    """A PyTorch ``ConvTranspose{1,2,3}d`` weight ``(I, O/groups, *k)`` as a funcnn ``ConvTranspose`` kernel.

    funcnn's kernel is ``(*k, I/groups, O)`` and applied to the input dilated
    by the strides without flipping; PyTorch's transposed convolution is the
    adjoint of a convolution with ``weight``, i.e. that dilated convolution
    with the kernel flipped. For group ``j``, input channel ``a`` and output
    channel ``b`` within it:
    ``kernel[..., a, j * O/groups + b] = weight[j * I/groups + a, b]`` flipped
    along every spatial axis.

    Args:
      weight: an array of rank 3, 4 or 5.
      groups: the layer's ``groups``; it must divide ``I``.

    Returns:
      The kernel ``(*k, I/groups, O)``.
    """
    weight = np.asarray(weight)
    in_channels, out_per_group, *window = weight.shape
    spatial = tuple(range(len(window)))
    grouped = weight.reshape(groups, in_channels // groups, out_per_group, *window)
    kernel = grouped.transpose(*(axis + 3 for axis in spatial), 1, 0, 2)
    kernel = kernel.reshape(*window, in_channels // groups, groups * out_per_group)
    return np.flip(kernel, axis=spatial)


def dense_kernel_from_torch(weight: Any, flattened: Shape | None = None) -> np.ndarray:
    """A PyTorch ``Linear`` weight ``(out, in)`` as a funcnn ``Dense`` kernel ``(in, out)``.

    Args:
      weight: an array of shape ``(out, in)``.
      flattened: where the layer's input is a ``Flatten`` of a channels-last
        array of shape ``(N, *spatial, C)`` (what funcnn's ``Flatten`` is
        given), that shape: PyTorch flattened ``(N, C, *spatial)``, so its
        features come in ``(c, *spatial)`` order and funcnn's in
        ``(*spatial, c)`` order, and the rows are permuted to match.

    Returns:
      ``weight.T``, its rows permuted when ``flattened`` is given.
    """
    weight = np.asarray(weight)
    if flattened is not None and len(flattened) > 2:
        *spatial, channels = flattened[1:]
        by_channel = weight.reshape(weight.shape[0], channels, *spatial)
        weight = by_channel.transpose(0, *range(2, by_channel.ndim), 1).reshape(weight.shape)
    return weight.T


class _Slot(NamedTuple):
    """A funcnn layer with weights, as the walk meets it."""

    path: tuple[int, ...]
    name: str
    input_shape: Shape
    params: Any  # jax.ShapeDtypeStruct leaves, from init
    state: Any
    flattened: Shape | None  # a Dense's input before a Flatten, else None

    def where(self) -> str:
        return _where(self.path, self.name)


class _Module(NamedTuple):
    """The ``state_dict`` entries of one PyTorch module: the keys that share a prefix."""

    prefix: str
    arrays: dict[str, np.ndarray]  # leaf name ("weight", "running_mean", ...) -> array

    def first_key(self) -> str:
        return _key(self.prefix, next(iter(self.arrays)))

    def kind(self) -> str:
        """``"BatchNorm"`` (running statistics), ``"Linear"`` (a rank-2 weight), ``"convolution"``
        (rank 3 to 5), else ``"other"``."""
        names = set(self.arrays) - set(_DROPPED)
        if {"running_mean", "running_var"} <= names:
            return "BatchNorm"
        if "weight" in names and names <= {"weight", "bias"}:
            rank = self.arrays["weight"].ndim
            return "Linear" if rank == 2 else "convolution" if rank in (3, 4, 5) else "other"
        return "other"

    def describe(self) -> str:
        kind = "an unsupported module" if self.kind() == "other" else f"a {self.kind()}"
        shapes = ", ".join(f"{name} {tuple(a.shape)}" for name, a in self.arrays.items())
        return f"{kind}: {shapes}"


def _where(path: tuple[int, ...], name: str) -> str:
    """A funcnn layer as its index path in ``params`` and its name: ``params[4][0][1] (Conv)``."""
    return "params" + "".join(f"[{index}]" for index in path) + f" ({name})"


def _key(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _as_numpy(key: str, value: Any) -> np.ndarray:
    """An entry as a NumPy array; a torch tensor via ``detach().cpu()`` (bfloat16 through float32)."""
    if isinstance(value, Mapping):
        raise LayerConfigError(
            f"{_WHERE}: argument `state_dict` entry {key!r} is a {type(value).__name__}, not an array; "
            "a training checkpoint keeps the model's state_dict under a key such as 'state_dict' or "
            "'model': pass that entry"
        )
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch.Tensor, without importing torch
        value = value.detach().cpu()
        if str(value.dtype) == "torch.bfloat16":
            value = value.float()
    array = np.asarray(value)
    if array.dtype.kind not in "biuf":
        raise LayerConfigError(
            f"{_WHERE}: argument `state_dict` entry {key!r} must be a numeric array, "
            f"got {type(value).__name__}"
        )
    return array


def _modules(state_dict: Mapping[str, Any]) -> list[_Module]:
    """The entries grouped by module (``"features.0.weight"`` -> ``"features.0"``), in order of first key,
    modules holding only dropped buffers left out."""
    groups: dict[str, dict[str, np.ndarray]] = {}
    for key, value in state_dict.items():
        if not isinstance(key, str):
            raise LayerConfigError(f"{_WHERE}: argument `state_dict` keys must be strings, got {key!r}")
        prefix, _, name = key.rpartition(".")
        groups.setdefault(prefix, {})[name] = _as_numpy(key, value)
    return [_Module(prefix, arrays) for prefix, arrays in groups.items() if set(arrays) - set(_DROPPED)]


def _abstract_init(layer: Layer, key: jax.Array, input_shape: Any) -> tuple[Any, Any, Any]:
    """``layer.init``'s output shape, and its params and state as ``jax.ShapeDtypeStruct`` leaves
    (nothing is computed)."""
    shapes = []

    def init(init_key):
        out_shape, params, state = layer.init(init_key, input_shape)
        shapes.append(out_shape)
        return params, state

    params, state = jax.eval_shape(init, key)
    return shapes[0], params, state


def _walk(model: Layer, input_shape: Shape) -> tuple[Any, Any, list[_Slot]]:
    """The model's params and state as ``init`` builds them (abstract leaves) and its layers with
    weights, depth first, each with the shape flowing into it."""
    key = jax.random.key(0)
    slots: list[_Slot] = []
    flatten: list[tuple[Shape, Shape] | None] = [None]  # the last Flatten's (input, output) shapes

    def visit(layer: Layer, shape: Any, path: tuple[int, ...]) -> tuple[Any, Any, Any]:
        info = layer_info(layer)
        if info.name in ("serial", "residual", "parallel"):
            outs, params, states, current = [], [], [], shape
            for index, child in enumerate(info.children):
                child_input = shape[index] if info.name == "parallel" else current
                current, child_params, child_state = visit(child, child_input, (*path, index))
                outs.append(current)
                params.append(child_params)
                states.append(child_state)
            out_shape = {"serial": current, "residual": tuple(shape), "parallel": tuple(outs)}[info.name]
            return out_shape, tuple(params), tuple(states)
        out_shape, params, state = _abstract_init(layer, key, shape)
        if info.name == "Flatten":
            flatten[0] = (tuple(shape), tuple(out_shape))
        if not jax.tree.leaves((params, state)):
            return out_shape, params, state
        if info.name not in _TORCH_KIND:
            raise LayerConfigError(
                f"{_WHERE}: argument `model` has a layer with weights that from_torch cannot fill: "
                f"{_where(path, info.name)}; "
                f"it moves the weights of {', '.join(sorted(_TORCH_KIND))}"
            )
        flattened = None
        if info.name == "Dense" and flatten[0] is not None:
            flattened = _flattened_input(flatten[0], tuple(shape), path)
        flatten[0] = None
        slots.append(_Slot(path, info.name, tuple(shape), params, state, flattened))
        return out_shape, params, state

    _abstract_init(model, key, input_shape)  # the model's own checks of the input shape, first
    _, params, state = visit(model, input_shape, ())
    return params, state, slots


def _flattened_input(flatten: tuple[Shape, Shape], shape: Shape, path: tuple[int, ...]) -> Shape:
    """The shape before the Flatten whose output reaches the Dense at ``path`` unchanged."""
    before, after = flatten
    if shape != after:
        raise LayerConfigError(
            f"{_WHERE}: argument `model` has a Flatten to {after} followed, before the next layer with "
            f"weights {_where(path, 'Dense')}, by layers that change the shape to {shape}: the order "
            "of its input features in PyTorch is unknown"
        )
    return before


def _params(slot: _Slot) -> dict[str, tuple[int, ...]]:
    """The shapes of ``slot``'s params, in PyTorch's order (weight, then bias)."""
    return {name: tuple(slot.params[name].shape) for name in _PARAM_NAMES if name in slot.params}


def _torch_shapes(slot: _Slot) -> dict[str, tuple[int, ...]]:
    """The PyTorch arrays (by leaf name) and shapes that fill ``slot``."""
    shapes = {}
    for name, shape in _params(slot).items():
        if name == "kernel" and slot.name == "Conv":
            shape = (shape[-1], shape[-2], *shape[:-2])
        elif name == "kernel" and slot.name == "ConvTranspose":
            groups = slot.input_shape[-1] // shape[-2]
            shape = (slot.input_shape[-1], shape[-1] // groups, *shape[:-2])
        elif name == "kernel":
            shape = shape[::-1]
        shapes[_PARAM_NAMES[name]] = shape
    if slot.name == "BatchNorm":
        shapes.update({_STATE_NAMES[name]: tuple(getattr(slot.state, name).shape) for name in _STATE_NAMES})
    return shapes


def _describe(slot: _Slot) -> str:
    funcnn = [f"{name} {shape}" for name, shape in _params(slot).items()]
    if slot.name == "BatchNorm":
        funcnn += [f"state.{name} {tuple(getattr(slot.state, name).shape)}" for name in _STATE_NAMES]
    torch = ", ".join(f"{name} {shape}" for name, shape in _torch_shapes(slot).items())
    return f"{', '.join(funcnn)}, which take a PyTorch {_TORCH_KIND[slot.name]} with {torch}"


def _misfit(slot: _Slot, module: _Module) -> str | None:
    """Why ``module`` cannot fill ``slot``, or None when it can."""
    if module.kind() != _TORCH_KIND[slot.name]:
        return f"a {_TORCH_KIND[slot.name]} is expected, not {module.describe().split(':')[0]}"
    expected = _torch_shapes(slot)
    given = {name: tuple(a.shape) for name, a in module.arrays.items() if name not in _DROPPED}
    if set(given) != set(expected):
        missing, extra = sorted(set(expected) - set(given)), sorted(set(given) - set(expected))
        parts = [f"missing {missing}" if missing else "", f"extra {extra}" if extra else ""]
        hint = " (use_bias / use_scale must match PyTorch's bias / affine)"
        return "the PyTorch module has " + " and ".join(p for p in parts if p) + hint
    if given != expected:
        diff = [
            f"{name} {given[name]} where {expected[name]} is expected"
            for name in expected
            if given[name] != expected[name]
        ]
        return "the shapes differ: " + ", ".join(diff)
    return None


def _counts(slots: list[_Slot], modules: list[_Module]) -> str:
    if len(slots) == len(modules):
        return ""
    return (
        f" (the model has {len(slots)} layers with weights and the state_dict {len(modules)} modules "
        "with weights: is it a state_dict of another architecture?)"
    )


def _pair(slots: list[_Slot], modules: list[_Module]) -> None:
    """Check that ``modules`` fill ``slots`` one for one; raise naming the first pair that does not fit."""
    for slot, module in zip(slots, modules):
        reason = _misfit(slot, module)
        if reason is not None:
            raise LayerConfigError(
                f"{_WHERE}: argument `state_dict` does not fit the model at PyTorch key "
                f"{module.first_key()!r} ({module.describe()}) and funcnn layer {slot.where()} "
                f"({_describe(slot)}): {reason}{_counts(slots, modules)}"
            )
    if len(modules) > len(slots):
        extra = modules[len(slots)]
        raise LayerConfigError(
            f"{_WHERE}: argument `state_dict` has {len(modules)} modules with weights but the model has "
            f"{len(slots)} layers with weights; the first without a funcnn layer is PyTorch key "
            f"{extra.first_key()!r} ({extra.describe()})"
        )
    if len(slots) > len(modules):
        extra = slots[len(modules)]
        raise LayerConfigError(
            f"{_WHERE}: argument `state_dict` has {len(modules)} modules with weights but the model has "
            f"{len(slots)} layers with weights; the first without PyTorch weights is funcnn layer "
            f"{extra.where()} ({_describe(extra)})"
        )


def _convert(slot: _Slot, module: _Module, dtype: DTypeLike | None) -> tuple[Any, Any]:
    """``slot``'s params and state filled from ``module``, in ``dtype`` or else the dtypes init gives."""

    def cast(array: np.ndarray, like: jax.ShapeDtypeStruct) -> jax.Array:
        return jnp.asarray(np.ascontiguousarray(array), dtype=like.dtype if dtype is None else dtype)

    arrays = module.arrays
    params = {}
    for name, like in slot.params.items():
        array = arrays[_PARAM_NAMES[name]]
        if name == "kernel" and slot.name == "Conv":
            array = conv_kernel_from_torch(array)
        elif name == "kernel" and slot.name == "ConvTranspose":
            array = conv_transpose_kernel_from_torch(array, slot.input_shape[-1] // like.shape[-2])
        elif name == "kernel":
            array = dense_kernel_from_torch(array, slot.flattened)
        params[name] = cast(array, like)
    if slot.name != "BatchNorm":
        return params, slot.state
    state = BatchNormState(
        *(cast(arrays[_STATE_NAMES[name]], getattr(slot.state, name)) for name in BatchNormState._fields)
    )
    return params, state


def _replace(tree: Any, path: tuple[int, ...], value: Any) -> Any:
    """``tree`` (nested tuples, one entry per child layer) with the entry at ``path`` set to ``value``."""
    if not path:
        return value
    head, *rest = path
    return (*tree[:head], _replace(tree[head], tuple(rest), value), *tree[head + 1 :])


def _read(state_dict: Any) -> Mapping[str, Any]:
    """``state_dict`` itself, or the one ``torch.load`` reads from a path (weights only, on the CPU)."""
    if isinstance(state_dict, (str, os.PathLike)):
        try:
            import torch  # funcnn does not depend on torch: only reading a file needs it
        except ImportError as error:
            raise ImportError(
                f"{_WHERE}: reading the PyTorch file {os.fspath(state_dict)!r} needs torch "
                "(pip install torch); without it, pass the state_dict as a mapping of NumPy arrays"
            ) from error
        state_dict = torch.load(state_dict, map_location="cpu", weights_only=True)
    if not isinstance(state_dict, Mapping):
        raise LayerConfigError(
            f"{_WHERE}: argument `state_dict` must be a mapping of names to arrays (a PyTorch "
            f"state_dict) or a path to a file saved with torch.save, got {type(state_dict).__name__}"
        )
    return state_dict


def from_torch(
    model: Layer,
    input_shape: Shape,
    state_dict: Mapping[str, Any] | str | os.PathLike,
    *,
    dtype: DTypeLike | None = None,
) -> tuple[Any, Any]:
    """The ``params`` and ``state`` of ``model`` filled from a PyTorch ``state_dict``.

    The PyTorch network must be built as ``model`` is: the same layers with
    weights in the same order (depth first; in a ``parallel``, the branches in
    order), convolutions with the same padding (funcnn's ``"SAME"`` with a
    stride puts the odd padding row at the end, PyTorch's ``padding=`` pads
    both sides alike), and a ``Flatten`` where PyTorch flattens its NCHW
    array. See the module docstring for each layout.

    BatchNorm's running variance is copied as stored: PyTorch's is the
    unbiased batch variance, funcnn's the biased one. Evaluation uses the
    stored value in both, so test-time outputs agree exactly; training on in
    funcnn moves it towards the biased variance (a factor ``(n - 1) / n``,
    ``n`` the values per channel of a batch). funcnn's ``BatchNorm(momentum=m)``
    is PyTorch's ``momentum=1 - m`` (PyTorch's default 0.1 is ``0.9`` here);
    ``epsilon`` is ``1e-5`` in both by default.

    Args:
      model: a funcnn model made of ``serial``, ``residual``, ``parallel`` and
        layers; the ones with weights must be ``Conv``, ``ConvTranspose``,
        ``Dense`` or ``BatchNorm``.
      input_shape: the input shape, as for ``model.init`` (NHWC).
      state_dict: ``module.state_dict()``: a mapping of names to torch
        tensors or NumPy arrays, in the modules' order; or the path of a
        file saved with ``torch.save(module.state_dict(), path)``, read with
        ``torch.load(..., weights_only=True)`` (needs torch).
      dtype: the dtype of every array returned; ``None`` keeps the dtypes
        ``model.init`` gives (its ``param_dtype``, float32 by default).

    Returns:
      ``(params, state)`` with the structure, shapes and dtypes of
      ``model.init``'s, ready for ``model.apply``.

    Raises:
      LayerConfigError: when the state_dict does not fit the model: the
        message names the first PyTorch key and funcnn layer (its index path
        in ``params``) that do not pair up, their kinds and shapes, and the
        number of layers with weights on each side when they differ; also
        when the model has a layer with weights that cannot be filled.
      ImportError: when ``state_dict`` is a path and torch is not installed.

    Examples:
        >>> import numpy as np, funcnn as fn
        >>> model = fn.serial(fn.Conv(4, (3, 3)), fn.Relu(), fn.Flatten(), fn.Dense(2))
        >>> torch_weights = {"0.weight": np.ones((4, 1, 3, 3)), "0.bias": np.zeros(4),
        ...                  "3.weight": np.ones((2, 144)), "3.bias": np.zeros(2)}
        >>> params, state = from_torch(model, (-1, 8, 8, 1), torch_weights)
        >>> conv, _, _, dense = params
        >>> conv["kernel"].shape, dense["kernel"].shape
        ((3, 3, 1, 4), (144, 2))
    """
    state_dict = _read(state_dict)
    params, state, slots = _walk(model, input_shape)
    modules = _modules(state_dict)
    _pair(slots, modules)
    for slot, module in zip(slots, modules):
        slot_params, slot_state = _convert(slot, module, dtype)
        params = _replace(params, slot.path, slot_params)
        state = _replace(state, slot.path, slot_state)
    return params, state
