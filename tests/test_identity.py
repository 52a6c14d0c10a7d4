"""Layer identity: names and children beside the ``(init, apply)`` pair; the checked ``init``."""

import jax
import jax.numpy as jnp
import pytest

import funcnn as fn
from funcnn.identity import layer_children, layer_name, make_layer


def test_every_constructor_registers_its_name():
    assert layer_name(fn.Conv(2, 3)) == "Conv"
    assert layer_name(fn.GlobalAvgPool()) == "GlobalAvgPool"
    assert layer_name(fn.serial(fn.Relu())) == "serial"
    assert layer_name(fn.Layer(lambda k, s: (s, (), ()), lambda p, s, x, **kw: (x, s))) == "Layer"


def test_combinators_keep_their_children():
    relu, dense = fn.Relu(), fn.Dense(2)
    assert layer_children(fn.serial(relu, dense)) == (relu, dense)
    assert layer_children(fn.residual(relu)) == (relu,)
    assert layer_children(fn.parallel(relu, dense)) == (relu, dense)
    assert layer_children(relu) == ()


def test_layer_stays_a_two_field_tuple_that_unpacks_as_in_stax():
    init_fn, apply_fn = fn.serial(fn.Dense(3), fn.Relu())
    shape, params, state = init_fn(jax.random.key(0), (-1, 2))
    y, _ = apply_fn(params, state, jnp.ones((4, 2)))
    assert shape == (-1, 3) and y.shape == (4, 3)


def test_a_users_own_pair_composes_and_can_be_named():
    def init(key, shape):
        return shape, (), ()

    def apply(params, state, x, *, key=None, train=False):
        return 2 * x, state

    plain = fn.Layer(init, apply)
    named = make_layer("Double", init, apply)
    model = fn.serial(plain, named, (init, apply))
    shape, params, state = model.init(jax.random.key(0), (-1, 3))
    y, _ = model.apply(params, state, jnp.ones((1, 3)))
    assert shape == (-1, 3) and float(y[0, 0]) == 8.0
    assert layer_name(named) == "Double"
    with pytest.raises(fn.LayerConfigError, match=r"Double: argument `key` must be a PRNG key"):
        named.init(0, (-1, 3))


@pytest.mark.parametrize("key", [jax.random.key(1), jax.random.PRNGKey(1)])
def test_typed_legacy_and_traced_keys_are_all_accepted(key):
    layer = fn.Conv(2, 3)
    shape, params, _ = layer.init(key, (-1, 5, 5, 1))
    assert shape == (-1, 3, 3, 2)
    traced = jax.jit(lambda k: layer.init(k, (-1, 5, 5, 1))[1])(key)
    assert traced["kernel"].shape == params["kernel"].shape


def test_lists_are_accepted_as_shapes():
    shape, _, _ = fn.Dense(2).init(jax.random.key(0), [-1, 3])
    assert shape == (-1, 2)


def test_combinators_hold_a_plain_pair_registered_as_layer_with_its_own_apply():
    def init(key, shape):
        return shape, (), ()

    def apply(params, state, x, *, key=None, train=False):
        return 2 * x, state

    relu = fn.Relu()
    for combinator in (fn.serial, fn.parallel, fn.residual):
        children = layer_children(combinator(relu, fn.Layer(init, apply)))
        assert children[0] == relu
        assert layer_name(children[1]) == "Layer" and children[1].apply((), (), 3.0) == (6.0, ())
        assert layer_children(children[1]) == ()
