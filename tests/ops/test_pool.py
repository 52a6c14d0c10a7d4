"""Forward pooling: naive reference, the course's global pooling values, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcnn as fn
from funcnn import LayerConfigError, checks, ops, shapes
from tests.reference import pool_reference

pytestmark = pytest.mark.usefixtures("x64")

SEED_MATRIX = np.array([[1.0, 3.0, 2.0], [9.0, 7.0, 4.0], [5.0, 6.0, 3.0]])
"""A 3x3 feature map whose maximum is 9 and mean 40 / 9 = 4.44, the course's global-pooling example."""


@pytest.mark.parametrize(
    "spatial, window, strides, padding",
    [
        ((6, 6), (2, 2), (2, 2), "VALID"),
        ((7, 5), (3, 2), (2, 1), "SAME"),
        ((5, 5), (3, 5), (1, 1), ((1, 1), (0, 2))),
        ((8,), (3,), (3,), "SAME"),
        ((4, 5, 4), (2, 2, 2), (1, 2, 2), "VALID"),
    ],
)
@pytest.mark.parametrize("count_include_pad", [True, False])
def test_pools_match_naive_reference(spatial, window, strides, padding, count_include_pad):
    x = jax.random.normal(jax.random.key(0), (2, *spatial, 3), jnp.float64)
    pads = shapes.padding_pairs(
        "test", checks.padding_spec("test", padding), spatial, window, strides, (1,) * len(spatial)
    )
    np.testing.assert_allclose(
        ops.max_pool(x, window, strides, padding),
        pool_reference(x, window, strides, pads, lambda b: np.nanmax(b, axis=1)),
        rtol=1e-12,
    )
    counted = pool_reference(x, window, strides, pads, lambda b: np.nansum(b, axis=1) / b.shape[1])
    uncounted = pool_reference(x, window, strides, pads, lambda b: np.nanmean(b, axis=1))
    np.testing.assert_allclose(
        ops.avg_pool(x, window, strides, padding, count_include_pad=count_include_pad),
        counted if count_include_pad else uncounted,
        rtol=1e-12,
    )


def test_global_pooling_of_the_course_matrix():
    x = SEED_MATRIX[None, :, :, None]
    for layer, expected in ((fn.GlobalMaxPool(), 9.0), (fn.GlobalAvgPool(), 40.0 / 9.0)):
        y, _ = layer.apply((), (), x)
        assert y.shape == (1, 1)
        np.testing.assert_allclose(y[0, 0], expected, rtol=1e-12)
    np.testing.assert_allclose(round(float(fn.GlobalAvgPool().apply((), (), x)[0][0, 0]), 2), 4.44)


def test_max_pool_padding_never_wins():
    x = -jnp.ones((1, 3, 3, 1), jnp.float64)
    np.testing.assert_array_equal(ops.max_pool(x, 2, 1, "SAME"), -jnp.ones((1, 3, 3, 1)))


@pytest.mark.parametrize(
    "shape, window, strides, padding, match",
    [
        ((4, 4), 2, None, "VALID", r"max_pool: argument `x` must have rank >= 3.*\(4, 4\)"),
        ((1, 4, 4, 1), 0, None, "VALID", r"max_pool: argument `window` must be a positive integer, got 0"),
        ((1, 4, 4, 1), 2, -1, "VALID", r"max_pool: argument `strides` must be a positive integer, got -1"),
        ((1, 2, 2, 1), 3, None, "VALID", r"max_pool: argument `window` \(3, 3\) is larger than the padded"),
        ((1, 4, 4, 1), (2, 2, 2), None, "VALID", r"`window` has 3 entries .* 2 spatial"),
    ],
)
def test_pool_errors(shape, window, strides, padding, match):
    with pytest.raises(LayerConfigError, match=match):
        ops.max_pool(jnp.ones(shape), window, strides, padding)
