"""Names for the leaves of a model's trees: which layer, at which position, holds each array.

A parameter tree names no layer (``params[3]['kernel']``); a label does. The
label of a leaf is the path of layers from the model's root to the leaf, each
child written ``INDEX:NAME`` (its position in its combinator and the constructor
that built it), then the leaf's own keys, all joined by ``/``::

    serial/0:Conv/kernel
    serial/3:residual/1:BatchNorm/scale
    serial/5:Dense/bias

The names are those of [`funcnn.identity.layer_name`][funcnn.identity.layer_name] (``"Layer"`` for a
plain ``Layer(init, apply)`` pair), so the labels are stable: they change only
when the model's structure does. They select leaves by kind or by position for
optax (``optax.multi_transform``, ``optax.masked``, the weight-decay mask of
``optax.adamw``), with shell-style patterns ([`matching`][funcnn.labels.matching])::

    labels = fn.labels.param_labels(model, (-1, 28, 28, 1))
    no_decay = fn.labels.matching(labels, "*/bias", "*BatchNorm/*")
    optimizer = optax.adamw(1e-3, weight_decay=1e-4, mask=jax.tree.map(lambda m: not m, no_decay))
    optimizer = fn.labels.freeze(optimizer, fn.labels.matching(labels, "serial/[0-3]:*"))
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from typing import Any

import jax
import optax

from funcnn import checks
from funcnn.core import Layer, LayerConfigError, Shape
from funcnn.identity import layer_info

Labels = Any
"""A pytree of ``str`` labels with the structure of the tree it names."""

Mask = Any
"""A pytree of ``bool`` with the structure of a parameter tree."""


def tree_labels(model: Layer, tree: Any) -> Labels:
    """Label every leaf of ``tree``, a tree aligned with ``model`` (its params, its state, their
    gradients, or anything of the same structure).

    A combinator's tree holds one entry per child (a tuple), labelled
    ``INDEX:NAME`` under the combinator's path; a leaf layer's own keys follow
    its path (``kernel``, ``bias``, a state's field names, list positions).

    Args:
      model: the model the tree belongs to.
      tree: a pytree of arrays (or of ``jax.ShapeDtypeStruct``) of ``model``'s structure.

    Returns:
      A pytree of the structure of ``tree`` whose leaves are the labels.

    Raises:
      LayerConfigError: ``model`` is not a layer (an uncalled constructor such as ``fn.Relu`` is
        named with a hint).

    Examples:
        >>> import jax, funcnn as fn
        >>> model = fn.serial(fn.Conv(4, 3), fn.Relu(), fn.Flatten(), fn.Dense(2))
        >>> params = model.init(jax.random.key(0), (-1, 5, 5, 1))[1]
        >>> jax.tree.leaves(fn.labels.tree_labels(model, params))
        ['serial/0:Conv/bias', 'serial/0:Conv/kernel', 'serial/3:Dense/bias', 'serial/3:Dense/kernel']
    """
    model = checks.layer("tree_labels", "argument `model`", model)
    return _labels(model, tree, layer_info(model).name)


def _labels(layer: Layer, tree: Any, path: str) -> Any:
    """The labels of ``tree`` under ``path``: per child for a combinator whose tree is a tuple
    with one entry per child, else by the leaves' own key paths."""
    children = layer_info(layer).children
    if children and isinstance(tree, (tuple, list)) and len(tree) == len(children):
        labelled = [
            _labels(child, subtree, f"{path}/{index}:{layer_info(child).name}")
            for index, (child, subtree) in enumerate(zip(children, tree))
        ]
        return type(tree)(labelled)
    return jax.tree_util.tree_map_with_path(lambda keys, _: "/".join([path, *map(_key_name, keys)]), tree)


def _key_name(key: Any) -> str:
    """One step of a key path as it reads in a label: a dict key, a field name or a position."""
    for attribute in ("key", "name", "idx"):
        if hasattr(key, attribute):
            return str(getattr(key, attribute))
    return str(key)


def param_labels(model: Layer, input_shape: Shape) -> Labels:
    """The labels of ``model``'s parameters ([`tree_labels`][funcnn.labels.tree_labels]) for inputs of
    ``input_shape``; nothing is allocated (``init`` runs under ``jax.eval_shape``).

    Args:
      model: the model.
      input_shape: its input shape, batch first (the batch may be ``-1``), as given to ``init``.

    Returns:
      A pytree of the structure of ``model``'s parameters whose leaves are their labels
      (``"serial/0:Conv/kernel"``).

    Raises:
      LayerConfigError: ``model`` is not a layer, or its ``init`` refuses ``input_shape`` (the
        checks every layer makes at ``init``).

    Examples:
        >>> import funcnn as fn
        >>> labels = fn.labels.param_labels(fn.serial(fn.Dense(3), fn.BatchNorm()), (-1, 2))
        >>> labels[1]
        {'bias': 'serial/1:BatchNorm/bias', 'scale': 'serial/1:BatchNorm/scale'}
    """
    model = checks.layer("param_labels", "argument `model`", model)
    params = jax.eval_shape(lambda key: model.init(key, input_shape)[1], jax.random.key(0))
    return _labels(model, params, layer_info(model).name)


def matching(labels: Labels, *patterns: str) -> Mask:
    """Which labels match any of the shell-style ``patterns`` (``*``, ``?``, ``[0-3]``; see
    ``fnmatch``, case-sensitive): a mask for ``optax.masked`` or [`freeze`][funcnn.labels.freeze].

    Args:
      labels: a pytree of labels, from [`param_labels`][funcnn.labels.param_labels] or
        [`tree_labels`][funcnn.labels.tree_labels].
      *patterns: one or more shell-style patterns, each matched against the whole label.

    Returns:
      A pytree of the structure of ``labels`` whose leaves are ``bool``: ``True`` where the label
      matches at least one pattern.

    Raises:
      LayerConfigError: no pattern given, a pattern that is not a ``str``, or a pattern that
        matches no label (a typo would otherwise select nothing silently); the message lists
        some labels.

    Examples:
        >>> import funcnn as fn
        >>> labels = fn.labels.param_labels(fn.serial(fn.Dense(3), fn.Dense(2)), (-1, 2))
        >>> fn.labels.matching(labels, "*/bias")
        ({'bias': True, 'kernel': False}, {'bias': True, 'kernel': False})
    """
    names = jax.tree.leaves(labels)
    if not patterns:
        raise LayerConfigError("matching: arguments `*patterns` must hold at least one pattern, got none")
    for pattern in patterns:
        if not isinstance(pattern, str):
            raise LayerConfigError(f"matching: argument `patterns` must hold strings, got {pattern!r}")
        if not any(fnmatch.fnmatchcase(name, pattern) for name in names):
            shown = ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")
            raise LayerConfigError(
                f"matching: pattern {pattern!r} matches none of the {len(names)} labels ({shown})"
            )
    return jax.tree.map(lambda name: any(fnmatch.fnmatchcase(name, p) for p in patterns), labels)


def freeze(optimizer: optax.GradientTransformation, frozen: Mask) -> optax.GradientTransformation:
    """``optimizer`` for the leaves where ``frozen`` is false; the others get a zero update
    and no optimiser state (``optax.multi_transform`` with ``optax.set_to_zero``), so they stay
    bit for bit as they are.

    Args:
      optimizer: the optax optimiser of the trained leaves.
      frozen: a mask of the parameters' structure, ``True`` where a leaf is frozen (e.g. from
        [`matching`][funcnn.labels.matching]), or a function from the parameters to such a mask;
        its leaves must be Python ``bool`` (not NumPy or JAX booleans). A function is called
        with the parameters in ``init`` and with the updates in ``update``.

    Returns:
      The optax ``GradientTransformation`` of ``optax.multi_transform``: ``optimizer``'s updates
      and state for the trained leaves, zero updates for the frozen ones.

    Raises:
      LayerConfigError: at the call, when ``optimizer`` has no callable ``init`` and ``update``;
        at the returned optimiser's ``init`` or ``update``, when the mask does not have the
        structure of the parameters (or updates) or a leaf is not a ``bool``.
    """
    checks.optimizer("freeze", optimizer)

    def partition(params: Any) -> Any:
        mask = frozen(params) if callable(frozen) else frozen
        if jax.tree.structure(mask) != jax.tree.structure(params) or not all(
            isinstance(leaf, bool) for leaf in jax.tree.leaves(mask)
        ):
            raise LayerConfigError(
                f"freeze: argument `frozen` must be a mask of bools of the parameters' structure "
                f"{jax.tree.structure(params)}, got {_describe(mask)}"
            )
        return jax.tree.map(lambda is_frozen: "frozen" if is_frozen else "trained", mask)

    return optax.multi_transform({"trained": optimizer, "frozen": optax.set_to_zero()}, partition)


def trainable_mask(model: Layer, input_shape: Shape, trainable: Any, *, where: str = "fit") -> Mask:
    """The mask of ``model``'s parameters to train, ``True`` where a leaf trains.

    Args:
      model: the model.
      input_shape: its input shape, batch first.
      trainable: a pattern or a sequence of patterns of the labels to train
        ([`matching`][funcnn.labels.matching]), a predicate on a label, or a mask of the parameters'
        structure.
      where: the function to name in errors.

    Returns:
      A pytree of ``bool`` of the structure of ``model``'s parameters: from the patterns
      ([`matching`][funcnn.labels.matching]), from the predicate called on each label, or the mask
      itself.

    Raises:
      LayerConfigError: ``model`` is not a layer or refuses ``input_shape``; a pattern that matches
        no label (named by [`matching`][funcnn.labels.matching], not ``where``); a mask of another
        structure or with leaves that are not ``bool``; or a ``trainable`` of another type.
    """
    labels = param_labels(model, input_shape)
    if isinstance(trainable, str) or (
        isinstance(trainable, Sequence) and trainable and all(isinstance(p, str) for p in trainable)
    ):
        return matching(labels, *([trainable] if isinstance(trainable, str) else trainable))
    if callable(trainable):
        return jax.tree.map(lambda name: bool(trainable(name)), labels)
    expected = jax.tree.structure(labels)
    if jax.tree.structure(trainable) != expected or not all(
        isinstance(leaf, bool) for leaf in jax.tree.leaves(trainable)
    ):
        raise LayerConfigError(
            f"{where}: argument `trainable` must be a pattern, a sequence of patterns, a predicate on a "
            f"parameter's label or a mask of bools of the parameters' structure {expected}, "
            f"got {_describe(trainable)}"
        )
    return trainable


def _describe(value: Any) -> str:
    """A short description of a value for an error message."""
    text = repr(value)
    return text if len(text) <= 120 else f"{type(value).__name__} {text[:100]}..."
