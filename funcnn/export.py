"""A trained model out of funcnn: its inference function as a ``jax.export`` artifact.

[`export`][funcnn.export.export] traces ``images -> logits`` with the parameters and state baked
in as constants, for any batch size (a symbolic batch dimension), and
[`save`][funcnn.export.save] writes the serialised artifact. Loading and calling it needs JAX
alone, not funcnn nor the model's code::

    exported = jax.export.deserialize(open("model.jax", "rb").read())
    logits = exported.call(images)  # (N, H, W) uint8, as the model was trained on

The artifact is StableHLO: it runs on the platforms it was exported for
(``platforms=``, this machine's by default) with any later jaxlib within
JAX's compatibility window (six months).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import export as jax_export

from funcnn import checks
from funcnn.core import Layer, LayerConfigError, Params, Shape, State
from funcnn.data.batching import scale_images
from funcnn.train.step import Preprocess


def inference(model: Layer, params: Params, state: State, *, preprocess: Preprocess = scale_images) -> Any:
    """``images -> logits`` of ``model`` in evaluation mode, with ``params`` and ``state`` fixed.

    Args:
      model: the model.
      params: its trained parameters.
      state: its state (e.g. BatchNorm's running statistics).
      preprocess: maps raw images to the model's inputs, as in training
        ([`funcnn.data.scale_images`][funcnn.data.scale_images] by default: ``uint8`` pixels to ``[0, 1]``).

    Returns:
      The function ``logits(images)``: ``model.apply(params, state, preprocess(images))``'s output,
      without a key and with ``train=False``, e.g. ``(N, classes)`` logits for a batch of ``N``
      raw images. It is not jitted; ``params`` and ``state`` are captured, not copied.
    """

    def logits(images: jax.Array) -> jax.Array:
        return model.apply(params, state, preprocess(images))[0]

    return logits


def export(
    model: Layer,
    params: Params,
    state: State,
    image_shape: Shape,
    *,
    dtype: Any = jnp.uint8,
    preprocess: Preprocess = scale_images,
    platforms: Sequence[str] | None = None,
) -> jax_export.Exported:
    """Export ``model``'s inference function ([`inference`][funcnn.export.inference]) for images of
    ``image_shape``.

    Args:
      model: the model.
      params: its trained parameters.
      state: its state.
      image_shape: one image's shape, without the batch (e.g. ``(28, 28)``); the batch
        dimension is symbolic, so the artifact takes any batch size.
      dtype: the images' dtype.
      preprocess: maps raw images to the model's inputs ([`inference`][funcnn.export.inference]).
      platforms: the platforms to export for (``"cpu"``, ``"cuda"``, ``"rocm"``, ``"tpu"``);
        ``None`` for the default backend's.

    Returns:
      The ``jax.export.Exported``; ``.call(images)`` runs it, ``.serialize()`` gives its bytes.

    Raises:
      LayerConfigError: ``model`` is not a layer, ``image_shape`` is not a tuple (or list) of
        positive integers, or the model's checks refuse images of that shape after
        ``preprocess`` (raised while tracing).
    """
    model = checks.layer("export", "argument `model`", model)
    if not isinstance(image_shape, (tuple, list)) or not all(checks.is_int(n) and n > 0 for n in image_shape):
        raise LayerConfigError(
            f"export: argument `image_shape` must be one image's shape (positive integers, no batch), "
            f"got {image_shape!r}"
        )
    batch = jax_export.symbolic_shape("batch")
    images = jax.ShapeDtypeStruct((*batch, *map(int, image_shape)), dtype)
    function = jax.jit(inference(model, params, state, preprocess=preprocess))
    return jax_export.export(function, platforms=platforms)(images)


def save(exported: jax_export.Exported, path: str | os.PathLike) -> Path:
    """Write ``exported``'s serialised bytes to ``path`` (a new file, or one replaced whole); the path.

    The bytes go first to ``path`` with ``.partial`` appended (``model.jax.partial``), which then
    replaces ``path``, so an interrupted write leaves no truncated artifact at ``path``.

    Args:
      exported: the artifact, from [`export`][funcnn.export.export].
      path: the file to write; its folder must exist.

    Returns:
      ``path`` as a ``pathlib.Path``.
    """
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(exported.serialize())
    partial.replace(path)
    return path


def load(path: str | os.PathLike) -> jax_export.Exported:
    """Read an artifact [`save`][funcnn.export.save] wrote (``jax.export.deserialize`` of its bytes).

    Args:
      path: the artifact's file.

    Returns:
      The ``jax.export.Exported``; ``.call(images)`` runs it.

    Raises:
      FileNotFoundError: no file at ``path``.
    """
    return jax_export.deserialize(bytearray(Path(path).read_bytes()))


def probabilities(logits: Any) -> np.ndarray:
    """Softmax of ``logits`` over the last axis, on the host, in float64.

    Args:
      logits: an array or array-like of any shape, e.g. ``(N, classes)``.

    Returns:
      A ``float64`` NumPy array of the shape of ``logits`` whose entries along the last axis are
      non-negative and sum to 1 (computed stably, by subtracting each row's maximum).
    """
    logits = np.asarray(logits, np.float64)
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)
