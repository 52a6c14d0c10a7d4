"""Classic filters: Sobel finds a step edge, Gaussian preserves the mean."""

import jax.numpy as jnp
import numpy as np
import pytest

import funcnn as fn
from funcnn import filters


def test_sobel_finds_a_vertical_step_edge():
    image = jnp.zeros((1, 8, 8, 1)).at[:, :, 4:, :].set(1.0)
    across, _ = fn.FixedConv(filters.sobel(1)).apply((), (), image)
    along, _ = fn.FixedConv(filters.sobel(0)).apply((), (), image)
    response = np.asarray(across[0, :, :, 0])
    assert set(np.flatnonzero(response.max(axis=0))) == {2, 3}  # VALID columns straddling the edge
    np.testing.assert_array_equal(response[:, [2, 3]], 4.0)
    np.testing.assert_array_equal(along, 0.0)


def test_sobel_axis_0_finds_a_horizontal_edge():
    image = jnp.zeros((1, 8, 8, 1)).at[:, 5:, :, :].set(1.0)
    y, _ = fn.FixedConv(filters.sobel(0)).apply((), (), image)
    rows = np.flatnonzero(np.abs(np.asarray(y[0, :, :, 0])).sum(axis=1))
    assert set(rows) == {3, 4}  # VALID rows whose 3x3 window straddles the edge between rows 4 and 5


@pytest.mark.parametrize("size, sigma", [(3, 0.8), (5, 1.0), (7, 2.0)])
def test_gaussian_is_normalised_symmetric_and_preserves_the_mean(size, sigma):
    kernel = filters.gaussian(size, sigma)
    assert kernel.shape == (size, size, 1, 1)
    np.testing.assert_allclose(jnp.sum(kernel), 1.0, rtol=1e-6)
    np.testing.assert_allclose(kernel[:, :, 0, 0], kernel[::-1, ::-1, 0, 0], rtol=1e-6)
    image = jnp.asarray(np.random.default_rng(0).random((1, 16, 16, 1)), jnp.float32)
    periodic = jnp.pad(image, ((0, 0), (8, 8), (8, 8), (0, 0)), mode="wrap")  # no border effects
    blurred, _ = fn.FixedConv(kernel, padding="SAME").apply((), (), periodic)
    np.testing.assert_allclose(jnp.mean(blurred[:, 8:24, 8:24]), jnp.mean(image), rtol=1e-5)
    assert jnp.std(blurred[:, 8:24, 8:24]) < jnp.std(image)


def test_sharpen_box_blur_and_laplacian_on_a_flat_image():
    flat = jnp.full((1, 6, 6, 1), 2.0)
    for kernel, expected in (
        (filters.sharpen(), 2.0),
        (filters.box_blur(3), 2.0),
        (filters.laplacian(), 0.0),
    ):
        y, _ = fn.FixedConv(kernel).apply((), (), flat)
        np.testing.assert_allclose(y, expected, atol=1e-6)
    np.testing.assert_allclose(filters.box_blur(4), 1 / 16)
