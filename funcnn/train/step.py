"""The training step: forward pass, loss, gradient and optimiser update.

[`build_train_step`][funcnn.train.step.build_train_step] returns the pure step;
[`make_train_step`][funcnn.train.step.make_train_step] jits
it with the state's buffers donated. The scanned epoch calls the same pure
step, so a scanned and a looped epoch compute the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from funcnn import checks
from funcnn.core import Layer, Params, State
from funcnn.data.batching import scale_images
from funcnn.train.state import TrainState

Loss = Callable[[jax.Array, jax.Array], jax.Array]
"""``loss(logits, labels) -> per-example losses``, e.g. ``softmax_cross_entropy_with_integer_labels``."""

Preprocess = Callable[[jax.Array], jax.Array]
"""Maps a raw batch (e.g. ``uint8`` images) to model inputs, inside ``jit``."""

Augment = Callable[[jax.Array, jax.Array], jax.Array]
"""``augment(key, inputs) -> inputs``, e.g. [`funcnn.data.augment`][funcnn.data.augment.augment]."""

PRECISIONS = {"fp32": jnp.float32, "bf16": jnp.bfloat16}
"""Compute dtypes by name, for the layers' ``dtype`` (``funcnn.models`` constructors take it);
parameters stay in their ``param_dtype``, float32 by default."""

DEFAULT_LOSS: Loss = optax.softmax_cross_entropy_with_integer_labels
"""The loss ``fit`` and the train step use unless given one: softmax cross-entropy of the logits
against integer labels, per example (the step averages it over the batch)."""


class StepMetrics(NamedTuple):
    """Batch-mean loss and accuracy of one step (stacked along steps by a scanned epoch).

    Attributes:
      loss: the mean of the per-example loss over the batch, a scalar (shape ``(steps,)`` once
        stacked).
      accuracy: the fraction of the batch whose largest logit is its label, a scalar (shape
        ``(steps,)`` once stacked).
    """

    loss: jax.Array
    accuracy: jax.Array


def forward(
    model: Layer,
    params: Params,
    model_state: State,
    inputs: jax.Array,
    *,
    key: jax.Array | None = None,
    train: bool = False,
) -> tuple[jax.Array, State]:
    """Apply ``model``; logits come back in at least float32 and the state in its own dtypes.

    Mixed precision is the layers' business: a layer built with
    ``dtype=jnp.bfloat16`` computes in bfloat16 from float32 parameters (its
    ``param_dtype``), and gradients flow back through its casts to them. The
    logits are widened for the loss and the accuracy, and the layer state
    (batch-norm running statistics) keeps its dtype: a 1% moving-average
    update is below bfloat16's resolution.

    Args:
      model: the layer to apply.
      params: its parameters.
      model_state: its state.
      inputs: a batch of inputs.
      key: a ``jax.random`` key for random layers in training.
      train: training mode.

    Returns:
      ``(logits, new_model_state)``: the model's output in its dtype widened to at least
      float32 (bfloat16 and float16 become float32), and its new state, each leaf cast back to
      the dtype of the corresponding leaf of ``model_state``.

    Raises:
      LayerConfigError: from ``model.apply`` when it is traced, if ``inputs`` do not fit the
        model (rank, channels) or a random layer in training gets no ``key``.
    """
    logits, new_state = model.apply(params, model_state, inputs, key=key, train=train)
    new_state = jax.tree.map(lambda new, old: new.astype(old.dtype), new_state, model_state)
    return logits.astype(checks.common_dtype([logits.dtype, jnp.float32])), new_state


def build_train_step(
    model: Layer,
    loss: Loss,
    optimizer: optax.GradientTransformation,
    *,
    preprocess: Preprocess = scale_images,
    augment: Augment | None = None,
) -> Callable[[TrainState, jax.Array, jax.Array], tuple[TrainState, StepMetrics]]:
    """The pure training step ``step(state, images, labels) -> (state, metrics)``.

    The step's key is ``fold_in(state.key, state.step)``, split between
    augmentation and the model's random layers.

    Args:
      model: the layer to train; its output is the logits.
      loss: ``loss(logits, labels)`` per example; the step minimises the batch mean.
      optimizer: an optax optimiser.
      preprocess: maps the raw batch to model inputs (default: scale ``uint8``
        images to [0, 1] with a channel axis).
      augment: ``augment(key, inputs)``, applied after ``preprocess``; ``None`` for none.

    Returns:
      The step function, not jitted.
    """

    def step(state: TrainState, images: jax.Array, labels: jax.Array) -> tuple[TrainState, StepMetrics]:
        augment_key, model_key = jax.random.split(jax.random.fold_in(state.key, state.step))
        inputs = preprocess(images)
        if augment is not None:
            inputs = augment(augment_key, inputs)
        labels = labels.astype(jnp.int32)

        def objective(params: Params) -> tuple[jax.Array, tuple[jax.Array, State]]:
            logits, model_state = forward(model, params, state.model_state, inputs, key=model_key, train=True)
            return loss(logits, labels).mean(), (logits, model_state)

        (value, (logits, model_state)), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
        with jax.numpy_dtype_promotion("standard"):  # optax relies on implicit promotion
            updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        new_state = TrainState(params, model_state, opt_state, state.step + 1, state.key)
        return new_state, StepMetrics(value, accuracy(logits, labels))

    return step


def make_train_step(
    model: Layer,
    loss: Loss,
    optimizer: optax.GradientTransformation,
    *,
    preprocess: Preprocess = scale_images,
    augment: Augment | None = None,
) -> Callable[[TrainState, jax.Array, jax.Array], tuple[TrainState, StepMetrics]]:
    """The jitted training step; the incoming state's buffers are donated.

    Args:
      model: the layer to train.
      loss: per-example ``loss(logits, labels)``.
      optimizer: an optax optimiser.
      preprocess: maps the raw batch to model inputs.
      augment: ``augment(key, inputs)`` or ``None``.

    Returns:
      ``step(state, images, labels) -> (state, StepMetrics)``; do not reuse the
      state passed in (its buffers are donated).
    """
    step = build_train_step(model, loss, optimizer, preprocess=preprocess, augment=augment)
    return jax.jit(step, donate_argnums=0)


def accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """The fraction of examples whose largest logit is the label.

    Ties go to the first largest logit (``jnp.argmax``).

    Args:
      logits: the model's output, shape ``(N, classes)`` (any leading axes, classes last).
      labels: integer labels, shape ``(N,)`` (the leading axes of ``logits``).

    Returns:
      A scalar float array in ``[0, 1]``.
    """
    predicted = jnp.argmax(logits, axis=-1)
    return (predicted == labels.astype(predicted.dtype)).mean()
