"""Batched, jitted evaluation: mean loss and accuracy over a whole data set."""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from funcnn import checks, distributed
from funcnn.core import Layer, Params, State
from funcnn.data.batching import scale_images
from funcnn.train.state import model_output_shape
from funcnn.train.step import DEFAULT_LOSS, Loss, Preprocess, forward


def evaluate(
    model: Layer,
    params: Params,
    model_state: State,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    batch_size: int = 1000,
    loss: Loss = DEFAULT_LOSS,
    preprocess: Preprocess = scale_images,
    mesh: Mesh | None = None,
) -> dict[str, float]:
    """Mean loss and accuracy of ``model`` (in inference mode) over every example.

    The last, incomplete batch is padded and its padding masked out, so
    every example counts exactly once and one compiled program serves all
    batches. With a ``mesh`` each batch (rounded up to a multiple of its
    devices) is split along its ``"data"`` axis, each process placing its own
    rows, and parameters or state that live on other devices (trained on
    another device count) are replicated onto the mesh first.

    Args:
      model: the trained layer.
      params: its parameters.
      model_state: its state.
      images: raw inputs, batch first (e.g. ``uint8`` images).
      labels: integer labels.
      batch_size: examples per jitted call.
      loss: per-example ``loss(logits, labels)``.
      preprocess: maps a raw batch to model inputs.
      mesh: the devices to evaluate on ([`funcnn.distributed.data_mesh`][funcnn.distributed.data_mesh]),
        or ``None`` for the default device.

    Returns:
      ``{"loss": ..., "accuracy": ...}`` as Python floats: the mean per-example loss, and the
      fraction of examples whose largest logit is their label.

    Raises:
      LayerConfigError: ``batch_size`` is not a positive int; ``(images, labels)`` are not arrays
        of one length with 1-D integer labels; a label lies outside ``[0, number of model
        outputs)``; ``model.init`` refuses the preprocessed input shape; or ``mesh`` is not a
        ``jax.sharding.Mesh`` with a ``"data"`` axis and every other axis of size 1.
      ValueError: there are no examples.
    """
    images, labels = checks.labelled_data("evaluate", "images, labels", (images, labels))
    n = len(images)
    if n == 0:
        raise ValueError("evaluate needs at least one example")
    batch_size = min(checks.positive_int("evaluate", "batch_size", batch_size), n)
    if mesh is not None:
        mesh = distributed.check_mesh("evaluate", mesh)
        devices = mesh.shape[distributed.DATA_AXIS]
        batch_size = -(-batch_size // devices) * devices
        params, model_state = distributed.onto_mesh(mesh, (params, model_state))
    input_shape = (-1, *jax.eval_shape(preprocess, images[:1]).shape[1:])
    checks.label_range("evaluate", "labels", labels, model_output_shape(model, input_shape)[-1])
    step = _eval_step(model, loss, preprocess)
    total_loss, correct = 0.0, 0
    for start in range(0, n, batch_size):
        x, y = images[start : start + batch_size], labels[start : start + batch_size]
        mask = np.ones(batch_size, bool)
        if len(x) < batch_size:
            mask[len(x) :] = False
            pad = batch_size - len(x)
            x = np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)])
            y = np.concatenate([y, np.zeros(pad, y.dtype)])
        batch = (x, y, mask)
        if mesh is not None:
            batch = distributed.shard_batch(
                mesh, [part[distributed.local_rows(mesh, batch_size)] for part in batch]
            )
        batch_loss, batch_correct = step(params, model_state, *batch)
        total_loss += float(batch_loss)
        correct += int(batch_correct)
    return {"loss": total_loss / n, "accuracy": correct / n}


@functools.lru_cache(maxsize=16)
def _eval_step(model: Layer, loss: Loss, preprocess: Preprocess) -> Callable:
    """The jitted ``(params, state, images, labels, mask) -> (loss sum, correct count)``, cached."""

    def step(
        params: Params, model_state: State, images: jax.Array, labels: jax.Array, mask: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        logits, _ = forward(model, params, model_state, preprocess(images))
        labels = labels.astype(jnp.int32)
        losses = jnp.where(mask, loss(logits, labels), 0.0)
        predicted = jnp.argmax(logits, axis=-1)
        correct = jnp.where(mask, predicted == labels.astype(predicted.dtype), False)
        return losses.sum(), correct.sum()

    return jax.jit(step)
