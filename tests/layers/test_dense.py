"""``Dense``: values, the dtype policy, parameter checks."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcnn as fn

KEY = jax.random.key(0)


def test_dense_values():
    layer = fn.Dense(3)
    _, params, _ = layer.init(KEY, (-1, 4))
    x = jax.random.normal(jax.random.key(1), (5, 4))
    y, _ = layer.apply(params, (), x)
    np.testing.assert_allclose(y, x @ params["kernel"] + params["bias"][None], rtol=1e-6)


@pytest.mark.parametrize("dtype", [jnp.int32, jnp.uint8, jnp.bool_])
def test_integer_inputs_are_promoted_not_truncated(dtype):
    layer = fn.Dense(3)
    _, params, _ = layer.init(KEY, (-1, 4))
    x = jnp.array([[1, 0, 1, 1], [0, 1, 1, 0]]).astype(dtype)
    y, _ = layer.apply(params, (), x)
    assert y.dtype == jnp.float32
    chex.assert_trees_all_close(y, x.astype(jnp.float32) @ params["kernel"] + params["bias"][None], rtol=1e-6)


def test_wrong_width_names_the_layer_and_both_shapes():
    _, params, _ = fn.Dense(3).init(KEY, (-1, 4))
    with pytest.raises(
        fn.LayerConfigError,
        match=r"Dense: argument `x` has 5 channels \(x.shape=\(2, 5\)\) but the layer was initialised for 4 "
        r"\(`kernel` has shape \(4, 3\)\)",
    ):
        fn.Dense(3).apply(params, (), jnp.ones((2, 5)))


def test_params_of_another_width_are_refused():
    _, params, _ = fn.Dense(7).init(KEY, (-1, 4))
    with pytest.raises(
        fn.LayerConfigError, match=r"Dense: argument `params` leaf 'kernel' has shape \(4, 7\) but init builds \(4, 3\)"
    ):
        fn.Dense(3).apply(params, (), jnp.ones((2, 4)))
