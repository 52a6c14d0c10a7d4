"""Seeded per-epoch shuffling, batching and scaling."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from funcnn.data import (
    FASHION_MNIST_MEAN,
    FASHION_MNIST_STD,
    batch_indices,
    epoch_permutation,
    iterate_batches,
    scale_images,
)


def test_permutation_is_reproducible_and_differs_between_epochs():
    first = epoch_permutation(3, 0, 100)
    np.testing.assert_array_equal(first, epoch_permutation(3, 0, 100))
    assert sorted(first) == list(range(100))
    assert not np.array_equal(first, epoch_permutation(3, 1, 100))
    assert not np.array_equal(first, epoch_permutation(4, 0, 100))


def test_batch_indices_drop_the_incomplete_last_batch():
    idx = batch_indices(0, 2, 10, 3)
    assert idx.shape == (3, 3) and idx.dtype == np.int32
    np.testing.assert_array_equal(idx.ravel(), epoch_permutation(0, 2, 10)[:9])


@pytest.mark.parametrize("batch_size", [0, 11])
def test_batch_size_must_fit_the_data(batch_size):
    with pytest.raises(ValueError, match=f"batch_size must be between 1 and .* \\(10\\), got {batch_size}"):
        batch_indices(0, 0, 10, batch_size)


def test_iterate_batches_pairs_images_with_their_labels():
    images = np.arange(20).reshape(10, 2)
    labels = np.arange(10)
    batches = list(iterate_batches(images, labels, 4, seed=1, epoch=0))
    assert len(batches) == 2
    for x, y in batches:
        np.testing.assert_array_equal(x[:, 0] // 2, y)


def test_scale_images_to_unit_range_with_channel_axis():
    images = np.array([[[0, 255], [51, 102]]], np.uint8)
    x = scale_images(images)
    assert x.shape == (1, 2, 2, 1) and x.dtype == jnp.float32
    np.testing.assert_allclose(x[0, :, :, 0], [[0.0, 1.0], [0.2, 0.4]], rtol=1e-6)


def test_scale_images_standardises_and_keeps_existing_channels():
    images = np.full((2, 3, 3, 1), 255, np.uint8)
    x = jax.jit(lambda a: scale_images(a, mean=FASHION_MNIST_MEAN, std=FASHION_MNIST_STD))(images)
    assert x.shape == (2, 3, 3, 1)
    np.testing.assert_allclose(x, (1 - FASHION_MNIST_MEAN) / FASHION_MNIST_STD, rtol=1e-6)


def test_floating_images_are_taken_as_already_scaled():
    images = np.full((2, 4, 4, 3), 0.5, np.float32)
    x = scale_images(images)
    assert x.shape == (2, 4, 4, 3) and float(x.max()) == 0.5
