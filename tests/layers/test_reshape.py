"""``Flatten``: the neuron count, dtype kept."""

import jax
import jax.numpy as jnp
import pytest

import funcnn as fn


def test_flatten_keeps_batch_and_counts_neurons():
    shape, _, _ = fn.Flatten().init(jax.random.key(0), (-1, 13, 13, 32))
    assert shape == (-1, fn.num_neurons((13, 13, 32)))
    y, _ = fn.Flatten().apply((), (), jnp.ones((2, 3, 4, 5), jnp.uint8))
    assert y.shape == (2, 60) and y.dtype == jnp.uint8


def test_flatten_refuses_a_tuple_of_branches():
    with pytest.raises(fn.LayerConfigError, match=r"Flatten: argument `x` must be an array, got a tuple of 2 entries"):
        fn.Flatten().apply((), (), (jnp.ones((2, 3)), jnp.ones((2, 3))))
