"""The layer protocol: a two-field NamedTuple of pure functions, and the project's error type."""

import copy
import pickle

import jax
import jax.numpy as jnp
import pytest

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


def test_a_layer_is_a_jit_argument_that_traces_once_per_layer():
    model = fn.serial(fn.Dense(3), fn.Relu())
    _, params, state = model.init(jax.random.key(0), (-1, 2))
    x = jnp.ones((4, 2))
    traces = []

    @jax.jit
    def forward(layer, params, state, x):
        traces.append(layer)
        return layer.apply(params, state, x)[0]

    first = forward(model, params, state, x)
    second = forward(model, params, state, x + 1)
    again = forward(fn.Layer(*model), params, state, x)  # an equal pair: the same functions
    assert len(traces) == 1
    assert jnp.allclose(first, model.apply(params, state, x)[0]) and jnp.allclose(again, first)
    assert jnp.allclose(second, model.apply(params, state, x + 1)[0])
    forward(fn.serial(fn.Dense(3), fn.Relu()), params, state, x)  # another model: traced anew
    assert len(traces) == 2


def test_a_layer_is_a_pytree_without_leaves():
    model = fn.Dense(3)
    _, params, _ = model.init(jax.random.key(0), (-1, 2))
    assert jax.tree.leaves((model, params)) == jax.tree.leaves(params)
    assert jax.tree.map(lambda leaf: leaf + 1, {"model": model})["model"] == model
    rebuilt = jax.tree.unflatten(jax.tree.structure(model), [])
    assert rebuilt == model and isinstance(rebuilt, fn.Layer)


PICKLE_ERROR = (
    r"^Layer: a model is a pair of functions \(closures\) and cannot be pickled; save its params and "
    r"state .*rebuild the model from code"
)


def test_a_layer_is_copied_as_itself_and_refuses_pickling_with_the_way_out():
    model = fn.serial(fn.Conv(2, 3), fn.Relu())
    assert copy.copy(model) is model and copy.deepcopy(model) is model
    assert copy.deepcopy({"model": model, "n": [1]})["model"] is model
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        with pytest.raises(TypeError, match=PICKLE_ERROR):
            pickle.dumps(model, protocol)


def test_the_jit_fixes_the_messages_name_work():
    model = fn.serial(fn.Dense(3), fn.BatchNorm())
    shape, params, state = jax.jit(model.init, static_argnums=1)(jax.random.key(0), (-1, 2))
    y, _ = jax.jit(model.apply, static_argnames="train")(params, state, jnp.ones((4, 2)), train=True)
    assert y.shape == (4, 3) and tuple(int(d) for d in shape) == (-1, 3)
