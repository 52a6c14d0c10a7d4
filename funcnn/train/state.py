"""The training state: everything a step reads and writes, as one pytree."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from funcnn import checks
from funcnn.core import Layer, Params, Shape, State


class TrainState(NamedTuple):
    """Parameters, layer state, optimiser state, step counter and random key.

    Attributes:
      params: the model's trainable parameters (float32 master copy).
      model_state: the model's non-trained state (e.g. batch-norm statistics).
      opt_state: the optax optimiser state.
      step: the number of optimiser steps taken, an ``int32`` scalar.
      key: the run's ``jax.random`` key; step ``s`` uses ``fold_in(key, s)``,
        so the randomness of a step depends only on the key and the step.
    """

    params: Params
    model_state: State
    opt_state: Any
    step: jax.Array
    key: jax.Array


def init_train_state(
    model: Layer,
    optimizer: optax.GradientTransformation,
    key: jax.Array,
    input_shape: Shape,
    *,
    shardings: Any = None,
    initial: tuple[Params, State] | None = None,
) -> TrainState:
    """Initialise the model and optimiser, in one compiled program.

    Args:
      model: the layer to train.
      optimizer: an optax optimiser.
      key: a ``jax.random`` key; split into the initialisation key and the
        training key.
      input_shape: the model's input shape, batch first (the batch may be ``-1``).
      shardings: where each leaf goes (e.g.
        [`funcnn.distributed.state_shardings`][funcnn.distributed.state_shardings];
        every process of a multi-host run builds its own shards), or ``None`` for the
        default device.
      initial: ``(params, model_state)`` to start from instead of ``model.init``'s (fine-tuning
        a trained model); they must have the structure, shapes and dtypes ``init`` gives.

    Returns:
      The state before the first step.

    Raises:
      LayerConfigError: ``initial`` does not fit the model (the first leaf that differs is named).
    """

    if initial is not None:
        expected = jax.eval_shape(lambda k: model.init(k, tuple(input_shape))[1:], key)
        checks.same_tree("init_train_state", "initial", initial, expected)
        if shardings is not None:
            initial = jax.device_put(initial, (shardings.params, shardings.model_state))

    def build(key: jax.Array, initial: tuple[Params, State] | None) -> TrainState:
        init_key, train_key = jax.random.split(key)
        params, model_state = model.init(init_key, tuple(input_shape))[1:]
        if initial is not None:
            params, model_state = initial
        with jax.numpy_dtype_promotion("standard"):  # optax relies on implicit promotion
            opt_state = optimizer.init(params)
        return TrainState(params, model_state, opt_state, jnp.zeros((), jnp.int32), train_key)

    return jax.jit(build, out_shardings=shardings)(key, initial)


def abstract_train_state(
    model: Layer, optimizer: optax.GradientTransformation, input_shape: Shape
) -> TrainState:
    """The shapes and dtypes of [`init_train_state`][funcnn.train.state.init_train_state]'s result, without
    computing it.

    Nothing is compiled or allocated: use it as the target of
    [`funcnn.checkpoint.restore`][funcnn.checkpoint.restore].

    Args:
      model: the layer to train.
      optimizer: an optax optimiser.
      input_shape: the model's input shape, batch first.

    Returns:
      A ``TrainState`` of ``jax.ShapeDtypeStruct`` leaves.
    """
    return jax.eval_shape(lambda key: init_train_state(model, optimizer, key, input_shape), jax.random.key(0))


def model_output_shape(model: Layer, input_shape: Shape) -> Shape:
    """The output shape ``model.init`` promises for ``input_shape``, without allocating parameters."""
    shapes: list[Shape] = []

    def init(key: jax.Array) -> Any:
        out_shape, params, state = model.init(key, tuple(input_shape))
        shapes.append(tuple(out_shape))
        return params, state

    jax.eval_shape(init, jax.random.key(0))
    return shapes[0]
