"""The layer protocol: a two-field NamedTuple of pure functions, and the project's error type."""

import copy
import pickle

import jax
import jax.numpy as jnp
import numpy as np
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


def test_grad_mode_builds_a_whole_model_on_one_mechanism():
    x = jnp.ones((1, 28, 28, 1))
    with fn.grad_mode("custom_vjp"):
        reverse_only = fn.models.lenet5()
        explicit = fn.Conv(2, 3, grad="custom")  # an explicit grad wins
    with fn.grad_mode("autodiff"):
        autodiff = fn.models.lenet5()
    custom = fn.models.lenet5()  # outside the blocks: the hand-written rules, forward mode included
    _, params, state = custom.init(jax.random.key(0), (-1, 28, 28, 1))
    tangents = {}
    for name, model in (("custom", custom), ("autodiff", autodiff)):
        tangents[name] = jax.jvp(lambda x, model=model: model.apply(params, state, x)[0], (x,), (x,))[1]
    linear = jax.jvp(lambda t: custom.apply(params, state, x * t)[0], (1.0,), (1.0,))[1]
    np.testing.assert_allclose(tangents["custom"], linear, rtol=1e-4, atol=1e-5)  # f(x t) at t = 1 moves along x
    np.testing.assert_allclose(tangents["custom"], tangents["autodiff"], rtol=1e-5, atol=1e-6)
    with pytest.raises(TypeError, match="can't apply forward-mode autodiff"):
        jax.jvp(lambda x: reverse_only.apply(params, state, x)[0], (x,), (x,))
    _, conv_params, _ = explicit.init(jax.random.key(0), (-1, 5, 5, 1))
    jax.jvp(lambda x: explicit.apply(conv_params, (), x)[0], (x[:, :5, :5],), (x[:, :5, :5],))
    with fn.grad_mode("custom_vjp"), pytest.raises(TypeError, match="can't apply forward-mode autodiff"):
        jax.jvp(lambda x: fn.ops.conv(x, conv_params["kernel"]), (x,), (x,))  # ops read the mode when called


def test_grad_mode_refuses_an_unknown_mode():
    match = r"grad_mode: argument `mode` must be one of \('custom', 'custom_vjp', 'autodiff'\), got 'fwd'"
    with pytest.raises(fn.LayerConfigError, match=match), fn.grad_mode("fwd"):
        pass
