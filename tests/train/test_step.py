"""The jitted train step: it learns, donates its state, and supports bf16 compute."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import funcnn as fn
from funcnn.train import DEFAULT_LOSS, TrainState, init_train_state, make_train_step
from funcnn.train.step import build_train_step


def initial_state(model, optimizer):
    return init_train_state(model, optimizer, jax.random.key(0), (-1, 6, 6, 1))


def test_state_is_a_pytree_with_typed_key(model):
    state = initial_state(model, optax.adam(1e-2))
    assert isinstance(state, TrainState)
    assert int(state.step) == 0 and jnp.issubdtype(state.key.dtype, jax.dtypes.prng_key)
    flat, treedef = jax.tree.flatten(state)
    assert jax.tree.unflatten(treedef, flat).params.keys() == state.params.keys()
    assert jax.tree.structure(jax.jit(lambda s: s)(state)) == treedef


def test_steps_reduce_the_loss(model, train_data):
    optimizer = optax.adam(3e-2)
    step = make_train_step(model, DEFAULT_LOSS, optimizer)
    state = initial_state(model, optimizer)
    images, labels = train_data
    losses = []
    for _ in range(30):
        state, metrics = step(state, images, labels)
        losses.append(float(metrics.loss))
    assert int(state.step) == 30 and int(state.model_state) == 30
    assert losses[-1] < 0.5 * losses[0]
    assert float(metrics.accuracy) > 0.9


def test_step_donates_the_state_buffers(model, train_data):
    optimizer = optax.sgd(0.1)
    state = initial_state(model, optimizer)
    new_state, _ = make_train_step(model, DEFAULT_LOSS, optimizer)(state, *train_data)
    assert state.params["w"].is_deleted()
    assert not new_state.params["w"].is_deleted()


def _bf16_model(dtype=jnp.bfloat16):
    return fn.serial(fn.Conv(4, 3, dtype=dtype), fn.Relu(dtype=dtype), fn.MaxPool(2, dtype=dtype),
                     fn.Flatten(), fn.Dense(3, dtype=dtype))  # fmt: skip


def test_bf16_layers_compute_in_bfloat16_and_keep_float32_params(train_data):
    """Mixed precision through the layers' dtype: the step itself casts nothing."""
    seen = []

    def loss(logits, labels):
        seen.append(logits.dtype)
        return DEFAULT_LOSS(logits, labels)

    model, optimizer = _bf16_model(), optax.adam(1e-2)
    step = build_train_step(model, loss, optimizer)
    state, metrics = jax.jit(step)(initial_state(model, optimizer), *train_data)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(state.params))
    assert seen == [jnp.float32]  # logits are widened for the loss
    lowered = jax.jit(step).lower(initial_state(model, optimizer), *train_data).as_text()
    assert "bf16" in lowered
    assert np.isfinite(float(metrics.loss))
    float32 = _bf16_model(None)
    lowered = jax.jit(build_train_step(float32, loss, optimizer)).lower(
        initial_state(float32, optimizer), *train_data
    )
    assert "bf16" not in lowered.as_text()


def test_bf16_training_keeps_batchnorm_statistics_in_float32():
    """A 1% moving-average update would round away in bfloat16; the state stays float32."""
    optimizer = optax.sgd(0.0)
    results = {}
    for dtype in (None, jnp.bfloat16):
        model = fn.serial(fn.Flatten(), fn.BatchNorm(dtype=dtype), fn.Dense(3, dtype=dtype))
        step = make_train_step(model, DEFAULT_LOSS, optimizer)
        state = init_train_state(model, optimizer, jax.random.key(0), (-1, 6, 6, 1))
        images = np.full((8, 6, 6), 255, np.uint8)
        for _ in range(50):
            state, _ = step(state, images, np.zeros(8, np.uint8))
        results[dtype] = state.model_state[1].mean
        assert results[dtype].dtype == jnp.float32
    expected = 1.0 - 0.99**50
    np.testing.assert_allclose(results[None], expected, rtol=1e-5)
    np.testing.assert_allclose(results[jnp.bfloat16], expected, rtol=1e-2)


def test_train_step_compiles_once_per_input_shape(model, train_data):
    """Trace-time checks run when the step is traced, never per call: one trace per input shape."""
    optimizer = optax.sgd(1e-2)
    state = initial_state(model, optimizer)
    images, labels = train_data
    traced_step = chex.assert_max_traces(build_train_step(model, DEFAULT_LOSS, optimizer), n=2)
    step = jax.jit(traced_step)
    for _ in range(3):
        state, _ = step(state, images[:32], labels[:32])
    for _ in range(3):
        state, _ = step(state, images[:16], labels[:16])
    chex.assert_shape(state.params["w"], (36, 3))
    with pytest.raises(AssertionError, match="Function 'step' is traced > 2 times"):
        step(state, images[:8], labels[:8])
