"""Pooling layers: the dtype policy and PyTorch's padding rule."""

import jax.numpy as jnp
import numpy as np
import pytest

import funcnn as fn


@pytest.mark.parametrize("layer", [fn.AvgPool(2), fn.GlobalAvgPool()])
def test_average_of_uint8_is_computed_in_floating_point(layer):
    """200 + 200 would wrap around in uint8; the mean must be 200."""
    y, _ = layer.apply((), (), jnp.full((1, 4, 4, 1), 200, jnp.uint8))
    assert y.dtype == jnp.float32
    np.testing.assert_array_equal(y, jnp.full(y.shape, 200.0))


def test_max_pool_of_integers_is_exact_in_floating_point():
    x = jnp.arange(16, dtype=jnp.int32).reshape(1, 4, 4, 1)
    y, _ = fn.MaxPool(2).apply((), (), x)
    np.testing.assert_array_equal(y[0, ..., 0], [[5.0, 7.0], [13.0, 15.0]])


@pytest.mark.parametrize("padding", [1, ((1, 1), (0, 1)), "SAME"])
def test_padding_up_to_half_the_window_has_no_window_of_padding_only(padding):
    x = -jnp.ones((1, 5, 5, 1))
    y, _ = fn.MaxPool(3, 2, padding).apply((), (), x)
    assert bool(jnp.all(jnp.isfinite(y)))


@pytest.mark.parametrize(
    "window, padding, match",
    [
        (2, 2, r"MaxPool: argument `padding` 2 must be at most half the window 2 on each side"),
        ((3, 2), ((1, 1), (2, 0)), r"MaxPool: argument `padding` \(\(1, 1\), \(2, 0\)\) must be at most half the window \(3, 2\)"),
        (3, -1, r"MaxPool: argument `padding` must be non-negative, got -1"),
    ],
)
def test_padding_more_than_half_the_window_is_refused(window, padding, match):
    with pytest.raises(fn.LayerConfigError, match=match):
        fn.MaxPool(window, padding=padding)
