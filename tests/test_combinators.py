"""Combinators, and composition with jit, vmap, grad and lax.scan."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcnn as fn
from tests.layers.test_shape_agreement import check_shape_agreement


def test_serial_parallel_fan_shapes():
    model = fn.serial(
        fn.Conv(4, 3, padding="SAME"),
        fn.fan_out(2),
        fn.parallel(fn.Conv(2, 1), fn.serial(fn.Conv(3, 3, padding="SAME"), fn.Relu())),
        fn.fan_in_concat(),
        fn.residual(fn.Conv(5, 3, padding="SAME"), fn.Relu()),
        fn.fan_out(3),
        fn.fan_in_sum(),
        fn.GlobalAvgPool(),
        fn.Dense(7),
    )
    assert check_shape_agreement(model, (-1, 6, 6, 2)) == (-1, 7)


def test_a_parallel_branch_may_take_several_inputs():
    """A branch of ``parallel`` gets its own entry of the input tuple, a tuple itself for a branch
    that joins inputs: ``(x1, x2), x3 -> x1 + x2, relu(x3)``."""
    model = fn.parallel(fn.fan_in_sum(), fn.Relu(), fn.parallel(fn.Dense(2), fn.Flatten()))
    shapes = (((-1, 3), (-1, 3)), (-1, 2), ((-1, 4), (-1, 2, 2)))
    out_shapes, params, state = model.init(jax.random.key(0), shapes)
    assert out_shapes == ((-1, 3), (-1, 2), ((-1, 2), (-1, 4)))
    x = ((jnp.ones((5, 3)), 2 * jnp.ones((5, 3))), -jnp.ones((5, 2)), (jnp.ones((5, 4)), jnp.ones((5, 2, 2))))
    (summed, relu, (dense, flat)), _ = model.apply(params, state, x)
    np.testing.assert_array_equal(summed, 3 * np.ones((5, 3)))
    np.testing.assert_array_equal(relu, np.zeros((5, 2)))
    assert dense.shape == (5, 2) and flat.shape == (5, 4)
    with pytest.raises(fn.LayerConfigError, match=r"fan_in_sum: argument `input_shape` must be a tuple of shapes"):
        model.init(jax.random.key(0), ((-1, 3), (-1, 2), ((-1, 4), (-1, 2, 2))))


def test_serial_keys_are_folded_in_by_index():
    model = fn.serial(fn.Dense(3), fn.Dense(3))
    _, params, _ = model.init(jax.random.key(7), (-1, 3))
    _, first, _ = fn.Dense(3).init(jax.random.fold_in(jax.random.key(7), 0), (-1, 3))
    np.testing.assert_array_equal(params[0]["kernel"], first["kernel"])
    assert not np.allclose(params[0]["kernel"], params[1]["kernel"])


def test_serial_checks_state_structure():
    def init(key, shape):
        return shape, (), ()

    def apply(params, state, x, *, key=None, train=False):
        return x, {"extra": x}

    bad = fn.Layer(init, apply)
    model = fn.serial(fn.Relu(), bad)
    _, params, state = model.init(jax.random.key(0), (-1, 2))
    with pytest.raises(
        fn.LayerConfigError,
        match=r"serial: argument `state` of layer 1 \(Layer\) has structure PyTreeDef\(\(\)\), but the layer returned a state of structure PyTreeDef\(\{'extra': \*\}\)",
    ):
        model.apply(params, state, jnp.ones((1, 2)))


@pytest.mark.parametrize(
    "layer, shapes, match",
    [
        (
            fn.fan_in_sum(),
            ((-1, 2), (-1, 3)),
            r"fan_in_sum: argument `input_shape` must be a tuple of shapes with equal shapes, got shapes \(\(-1, 2\), \(-1, 3\)\)",
        ),
        (fn.fan_in_concat(), ((-1, 2, 2), (-1, 3, 2)), r"fan_in_concat: .* outside axis -1, got shapes"),
        (fn.parallel(fn.Relu()), ((-1, 2), (-1, 2)), r"parallel: argument `input_shape` has 2 entries but"),
        (fn.residual(fn.Dense(3)), (-1, 2), r"residual: arguments `\*layers` \(the body\) map shape \(-1, 2\) to \(-1, 3\); a residual connection needs them equal"),
    ],
)
def test_combinator_errors(layer, shapes, match):
    with pytest.raises(fn.LayerConfigError, match=match):
        layer.init(jax.random.key(0), shapes)


def test_fan_in_concat_along_an_unknown_batch_stays_unknown():
    shape, _, _ = fn.fan_in_concat(axis=0).init(jax.random.key(0), ((-1, 3), (-1, 3)))
    assert shape == (-1, 3)
    assert fn.fan_in_concat(axis=0).init(jax.random.key(0), ((2, 3), (4, 3)))[0] == (6, 3)


def test_fan_out_rejects_non_positive():
    with pytest.raises(fn.LayerConfigError, match=r"fan_out: argument `n` must be a positive integer, got 0"):
        fn.fan_out(0)


@pytest.fixture(scope="module")
def small_model():
    model = fn.serial(
        fn.Conv(4, 3, padding="SAME"), fn.BatchNorm(), fn.Relu(), fn.MaxPool(2), fn.Flatten(), fn.Dense(3)
    )
    _, params, state = model.init(jax.random.key(0), (-1, 6, 6, 1))
    x = jax.random.normal(jax.random.key(1), (4, 6, 6, 1))
    return model, params, state, x


def test_composes_with_jit_vmap_grad_and_scan(small_model):
    model, params, state, x = small_model

    def loss(p, x):
        y, _ = model.apply(p, state, x)
        return jnp.sum(y**2)

    grads = jax.jit(jax.grad(loss))(params, x)
    assert jax.tree_util.tree_structure(grads) == jax.tree_util.tree_structure(params)

    per_example = jax.vmap(jax.grad(loss), in_axes=(None, 0))(params, x[:, None])
    summed = jax.tree.map(lambda g: jnp.sum(g, axis=0), per_example)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5), summed, grads)

    def body(carry, _):
        p, s = carry
        (y, s), g = jax.value_and_grad(
            lambda p: (lambda out: (jnp.mean(out[0] ** 2), out[1]))(model.apply(p, s, x, train=True)),
            has_aux=True,
        )(p)
        return (jax.tree.map(lambda a, b: a - 0.01 * b, p, g), s), y

    (_, new_state), losses = jax.lax.scan(body, (params, state), None, length=3)
    assert losses.shape == (3,)
    assert jax.tree_util.tree_structure(new_state) == jax.tree_util.tree_structure(state)


def test_batchnorm_moves_statistics_in_training_only(small_model):
    model, params, state, x = small_model
    _, trained = model.apply(params, state, x, train=True)
    _, evaluated = model.apply(params, state, x, train=False)
    assert not np.allclose(trained[1].mean, state[1].mean)
    np.testing.assert_array_equal(evaluated[1].mean, state[1].mean)
    np.testing.assert_array_equal(evaluated[1].var, state[1].var)


def test_evaluation_is_deterministic():
    model = fn.serial(fn.Dense(8), fn.Dropout(0.5), fn.BatchNorm(), fn.Dense(2))
    _, params, state = model.init(jax.random.key(0), (-1, 4))
    x = jnp.ones((3, 4))
    a, _ = model.apply(params, state, x, key=jax.random.key(1))
    b, _ = model.apply(params, state, x, key=jax.random.key(2))
    np.testing.assert_array_equal(a, b)
    c, _ = model.apply(params, state, x, key=jax.random.key(1), train=True)
    d, _ = model.apply(params, state, x, key=jax.random.key(2), train=True)
    assert not np.allclose(c, d)


def test_keys_are_checked_before_they_are_folded_in():
    model = fn.serial(fn.Dense(3), fn.Dropout(0.5))
    _, params, state = model.init(jax.random.key(0), (-1, 2))
    with pytest.raises(fn.LayerConfigError, match=r"serial: argument `key` must be a PRNG key .* got 0 \(int\)"):
        model.apply(params, state, jnp.ones((2, 2)), key=0, train=True)
    with pytest.raises(fn.LayerConfigError, match=r"serial: argument `key` .* \(one key, not a batch of keys\), got an array of shape \(2,\)"):
        model.init(jax.random.split(jax.random.key(0)), (-1, 2))


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: fn.serial(fn.Relu), r"serial: argument 0 is the function `Relu`, not a layer; did you mean `Relu\(\)`\?"),
        (lambda: fn.parallel(fn.Relu(), fn.Dense), r"parallel: argument 1 is the function `Dense`, not a layer; did you mean `Dense\(...\)`\?"),
        (lambda: fn.residual(3), r"residual: argument 0 must be a layer \(an \(init, apply\) pair such as fn.Relu\(\)\), got int 3"),
        (lambda: fn.parallel(), r"parallel: arguments `\*layers` must hold at least one layer, got none"),
    ],
)
def test_combinators_check_their_layers(make, match):
    with pytest.raises(fn.LayerConfigError, match=match):
        make()


def test_parallel_refuses_an_array_for_its_tuple_of_inputs():
    layer = fn.parallel(fn.Relu(), fn.Relu())
    _, params, state = layer.init(jax.random.key(0), ((-1, 3), (-1, 3)))
    with pytest.raises(
        fn.LayerConfigError, match=r"parallel: argument `x` must be a tuple of 2 arrays \(one per layer\), got an array of shape \(4, 3\)"
    ):
        layer.apply(params, state, jnp.ones((4, 3)))


def test_fan_in_brings_branches_to_one_dtype():
    x = (jnp.ones((2, 3), jnp.float32), jnp.ones((2, 3), jnp.bfloat16), jnp.ones((2, 3), jnp.int32))
    y, _ = fn.fan_in_sum().apply((), (), x)
    assert y.dtype == jnp.float32 and float(y[0, 0]) == 3.0
    y, _ = fn.fan_in_concat().apply((), (), (jnp.ones((2, 3), jnp.float16), jnp.ones((2, 1), jnp.bfloat16)))
    assert y.shape == (2, 4) and y.dtype == jnp.float32


def test_residual_checks_the_body_shape_at_apply_too():
    layer = fn.residual(fn.Dense(3))
    _, params, state = fn.residual(fn.Dense(4)).init(jax.random.key(0), (-1, 4))
    _, wrong, _ = fn.serial(fn.Dense(3)).init(jax.random.key(0), (-1, 4))
    with pytest.raises(fn.LayerConfigError, match=r"residual: arguments `\*layers` \(the body\) map shape \(2, 4\) to \(2, 3\)"):
        layer.apply(wrong, state, jnp.ones((2, 4)))
    y, _ = fn.residual(fn.Dense(4)).apply(params, state, jnp.ones((2, 4), jnp.uint8))
    assert y.dtype == jnp.float32
