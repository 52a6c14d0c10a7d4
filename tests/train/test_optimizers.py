"""Optimisers by name, with and without the cosine schedule."""

import jax
import jax.numpy as jnp
import optax
import pytest

from funcnn.train import OPTIMIZERS, make_optimizer


@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize("decay_steps", [None, 10])
def test_each_optimizer_takes_a_step_downhill(name, decay_steps):
    optimizer = make_optimizer(name, 0.1, decay_steps=decay_steps)
    params = {"w": jnp.array([1.0, -2.0])}
    with jax.numpy_dtype_promotion("standard"):
        updates, _ = optimizer.update({"w": params["w"]}, optimizer.init(params), params)
    assert float(jnp.sum(optax.apply_updates(params, updates)["w"] ** 2)) < 5.0


def test_cosine_schedule_decays_to_zero():
    optimizer = make_optimizer("sgd", 0.1, decay_steps=2)
    params = {"w": jnp.ones(1)}
    state = optimizer.init(params)
    with jax.numpy_dtype_promotion("standard"):
        for _ in range(2):
            _, state = optimizer.update({"w": jnp.ones(1)}, state, params)
        updates, _ = optimizer.update({"w": jnp.ones(1)}, state, params)
    assert float(updates["w"][0]) == 0.0


@pytest.mark.parametrize(
    ("name", "rate", "message"),
    [
        ("rmsprop", 0.1, "unknown optimizer 'rmsprop'; choose one of adam, sgd, adamw"),
        ("adam", 0.0, "learning rate must be positive, got 0.0"),
    ],
)
def test_bad_settings(name, rate, message):
    with pytest.raises(ValueError, match=message):
        make_optimizer(name, rate)
