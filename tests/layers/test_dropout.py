"""``Dropout``: the rate is the drop probability; keys are checked."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcnn as fn


def test_dropout_rate_is_the_drop_probability():
    x = jnp.ones((100_000,))[None]
    y, _ = fn.Dropout(0.25).apply((), (), x, key=jax.random.key(0), train=True)
    dropped = float(jnp.mean(y == 0))
    assert abs(dropped - 0.25) < 0.01
    np.testing.assert_allclose(jnp.mean(y), 1.0, atol=0.02)
    np.testing.assert_array_equal(fn.Dropout(0.25).apply((), (), x)[0], x)


@pytest.mark.parametrize("rate", [np.float32(0.5), np.float64(0.1), jnp.asarray(0.3), 0, np.int64(0)])
def test_any_real_scalar_rate_in_range_is_accepted(rate):
    y, _ = fn.Dropout(rate).apply((), (), jnp.ones((4, 8)), key=jax.random.key(0), train=True)
    assert y.shape == (4, 8)


def test_legacy_keys_work_and_non_keys_are_refused():
    x = jnp.ones((2, 8))
    y, _ = fn.Dropout(0.5).apply((), (), x, key=jax.random.PRNGKey(0), train=True)
    assert y.shape == x.shape
    with pytest.raises(fn.LayerConfigError, match=r"Dropout: argument `key` must be a PRNG key .* got 3 \(int\)"):
        fn.Dropout(0.5).apply((), (), x, key=3, train=True)


def test_integer_input_becomes_floating():
    y, _ = fn.Dropout(0.5).apply((), (), jnp.ones((2, 4), jnp.uint8), key=jax.random.key(0), train=True)
    assert y.dtype == jnp.float32 and set(np.unique(y)) <= {0.0, 2.0}
