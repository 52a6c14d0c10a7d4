"""Intermediate activations: every layer's output inside a model, by its label.

[`features`][funcnn.taps.features] applies a model once and returns the outputs of the layers whose
paths match ``names``, with the paths of [`funcnn.labels`][funcnn.labels] (a parameter's label
without its last part): ``serial/0:Conv`` is the first layer of a ``serial``,
``serial/2:residual/1:BatchNorm`` a layer inside a residual block. It works under
``jit``, ``grad`` and ``vmap`` like ``apply`` (the recording happens while tracing).
"""

from __future__ import annotations

import fnmatch
from typing import Any

import jax

from funcnn import checks
from funcnn.core import Layer, LayerConfigError, Params, State
from funcnn.identity import tapping


def features(
    model: Layer,
    params: Params,
    state: State,
    x: Any,
    *,
    names: str | tuple[str, ...] = "*",
    key: jax.Array | None = None,
    train: bool = False,
) -> dict[str, Any]:
    """The outputs of ``model``'s layers on ``x`` whose paths match ``names``, in call order
    (a combinator before its children), the model's own output under its root name.

    Args:
      model: the model.
      params: its parameters.
      state: its state.
      x: the input batch.
      names: shell-style patterns of layer paths (``fnmatch``), e.g. ``"serial/0:Conv"``,
        ``"*Conv"`` or ``("serial/[0-2]:*",)``; every layer by default.
      key: a ``jax.random`` key, for random layers in training.
      train: training mode, as in ``apply``.

    Returns:
      ``{path: output}`` for each matching layer.

    Raises:
      LayerConfigError: a pattern that matches no layer's path (the paths are listed in part).

    Examples:
        >>> import jax, jax.numpy as jnp, funcnn as fn
        >>> model = fn.serial(fn.Conv(4, 3), fn.Relu(), fn.Flatten(), fn.Dense(2))
        >>> _, params, state = model.init(jax.random.key(0), (-1, 6, 6, 1))
        >>> found = fn.features(model, params, state, jnp.ones((1, 6, 6, 1)), names="*:Conv")
        >>> {path: y.shape for path, y in found.items()}
        {'serial/0:Conv': (1, 4, 4, 4)}
    """
    model = checks.layer("features", "argument `model`", model)
    patterns = (names,) if isinstance(names, str) else names
    if not isinstance(patterns, (tuple, list)) or not patterns:
        raise LayerConfigError(
            f"features: argument `names` must be a pattern or a non-empty tuple of patterns, got {names!r}"
        )
    with tapping() as tap:
        model.apply(params, state, x, key=key, train=train)
    paths = list(tap.outputs)
    for pattern in patterns:
        if not isinstance(pattern, str) or not any(fnmatch.fnmatchcase(p, pattern) for p in paths):
            shown = ", ".join(paths[:6]) + (", ..." if len(paths) > 6 else "")
            raise LayerConfigError(
                f"features: argument `names` pattern {pattern!r} matches none of the {len(paths)} layer "
                f"paths ({shown})"
            )
    return {path: y for path, y in tap.outputs.items() if any(fnmatch.fnmatchcase(path, p) for p in patterns)}
