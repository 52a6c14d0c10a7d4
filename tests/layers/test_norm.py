"""``BatchNorm``, ``LayerNorm``, ``GroupNorm``: values, state checks, batch-size rules."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcnn as fn

KEY = jax.random.key(0)


def test_batchnorm_normalises_with_batch_statistics_in_training():
    layer = fn.BatchNorm(momentum=0.9)
    _, params, state = layer.init(KEY, (-1, 4, 4, 3))
    x = 3.0 + 2.0 * jax.random.normal(jax.random.key(1), (8, 4, 4, 3))
    y, new_state = layer.apply(params, state, x, train=True)
    np.testing.assert_allclose(jnp.mean(y, axis=(0, 1, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(jnp.std(y, axis=(0, 1, 2)), 1.0, atol=1e-3)
    np.testing.assert_allclose(new_state.mean, 0.1 * jnp.mean(x, axis=(0, 1, 2)), rtol=1e-5)
    assert isinstance(new_state, fn.BatchNormState)


def test_layernorm_and_groupnorm_normalise_per_example():
    x = 5.0 + 3.0 * jax.random.normal(KEY, (2, 4, 4, 6))
    _, params, _ = fn.LayerNorm().init(KEY, x.shape)
    y, _ = fn.LayerNorm().apply(params, (), x)
    np.testing.assert_allclose(jnp.mean(y, axis=-1), 0.0, atol=1e-5)
    _, params, _ = fn.GroupNorm(3).init(KEY, x.shape)
    y, _ = fn.GroupNorm(3).apply(params, (), x)
    grouped = y.reshape(2, 4, 4, 3, 2)
    np.testing.assert_allclose(jnp.mean(grouped, axis=(1, 2, 4)), 0.0, atol=1e-5)
    np.testing.assert_allclose(jnp.var(grouped, axis=(1, 2, 4)), 1.0, atol=1e-3)


@pytest.mark.parametrize("batch, count", [((0, 4), 0), ((1, 4), 1), ((1, 1, 1, 4), 1)])
def test_batchnorm_training_needs_two_values_per_channel(batch, count):
    layer = fn.BatchNorm()
    _, params, state = layer.init(KEY, (-1, *batch[1:]))
    with pytest.raises(
        fn.LayerConfigError,
        match=rf"BatchNorm: argument `x` of shape \({', '.join(map(str, batch))},?\) has {count} value\(s\) per channel",
    ):
        layer.apply(params, state, jnp.ones(batch), train=True)
    y, same = layer.apply(params, state, jnp.ones(batch))  # evaluation uses the running statistics
    assert y.shape == batch and same is state


def test_batchnorm_state_is_checked():
    layer = fn.BatchNorm()
    _, params, state = layer.init(KEY, (-1, 4))
    with pytest.raises(fn.LayerConfigError, match=r"BatchNorm: argument `state` must be the BatchNormState"):
        layer.apply(params, (), jnp.ones((2, 4)), train=True)
    bad = fn.BatchNormState(state.mean, jnp.ones(5))
    with pytest.raises(fn.LayerConfigError, match=r"BatchNorm: argument `state` leaf 'var' has shape \(5,\)"):
        layer.apply(params, bad, jnp.ones((2, 4)))


def test_batchnorm_of_integers_updates_float_statistics():
    layer = fn.BatchNorm(momentum=0.5)
    _, params, state = layer.init(KEY, (-1, 2))
    y, new_state = layer.apply(params, state, jnp.array([[0, 2], [2, 4]], jnp.uint8), train=True)
    assert y.dtype == jnp.float32
    np.testing.assert_allclose(new_state.mean, [0.5, 1.5])
