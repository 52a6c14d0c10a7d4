"""The layer protocol: a two-field NamedTuple of pure functions, and the project's error type."""

import jax
import jax.numpy as jnp

import funcnn as fn


def test_layer_is_a_two_field_named_tuple():
    assert fn.Layer._fields == ("init", "apply")
    init, apply = fn.Relu()
    assert callable(init) and callable(apply)


def test_layer_config_error_is_a_value_error():
    assert issubclass(fn.LayerConfigError, ValueError)


def test_layers_are_pure_under_jit_and_vmap():
    layer = fn.Dense(2)
    _, params, state = layer.init(jax.random.key(0), (-1, 3))
    x = jnp.arange(6.0).reshape(2, 3)
    eager, _ = layer.apply(params, state, x)
    jitted, _ = jax.jit(layer.apply)(params, state, x)
    mapped, _ = jax.vmap(lambda row: layer.apply(params, state, row[None])[0][0])(x), None
    assert jnp.allclose(eager, jitted) and jnp.allclose(eager, mapped)
