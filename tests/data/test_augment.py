"""Augmentation: pure, key-driven, shape-preserving, and usable under jit."""

import jax
import jax.numpy as jnp
import numpy as np

from funcnn.data import augment, random_crop, random_flip


def image():
    return jnp.arange(1.0, 26.0).reshape(5, 5, 1)


def test_random_crop_is_a_shift_of_the_zero_padded_image():
    crop = jax.jit(random_crop, static_argnums=2)
    original = image()
    padded = np.pad(np.asarray(original), ((2, 2), (2, 2), (0, 0)))
    windows = {tuple(padded[i : i + 5, j : j + 5].ravel()) for i in range(5) for j in range(5)}
    for seed in range(20):
        cropped = crop(jax.random.key(seed), original, 2)
        assert cropped.shape == original.shape
        assert tuple(np.asarray(cropped).ravel()) in windows


def test_random_crop_without_padding_is_the_identity():
    np.testing.assert_array_equal(random_crop(jax.random.key(0), image(), 0), image())


def test_random_flip_mirrors_or_keeps_and_does_both():
    flip = jax.jit(random_flip)
    results = [np.asarray(flip(jax.random.key(seed), image())) for seed in range(20)]
    mirrored = np.asarray(image())[:, ::-1]
    assert all(np.array_equal(r, image()) or np.array_equal(r, mirrored) for r in results)
    assert any(np.array_equal(r, mirrored) for r in results)
    assert any(np.array_equal(r, image()) for r in results)


def test_augment_under_jit_is_deterministic_per_key_and_differs_per_example():
    batch = jnp.broadcast_to(image(), (16, 5, 5, 1))
    run = jax.jit(lambda key, x: augment(key, x, crop_padding=1))
    first = run(jax.random.key(0), batch)
    assert first.shape == batch.shape and first.dtype == batch.dtype
    np.testing.assert_array_equal(first, run(jax.random.key(0), batch))
    assert len({tuple(np.asarray(x).ravel()) for x in first}) > 1
    assert not np.array_equal(first, run(jax.random.key(1), batch))


def test_augment_with_nothing_enabled_is_the_identity():
    batch = jnp.broadcast_to(image(), (3, 5, 5, 1))
    np.testing.assert_array_equal(augment(jax.random.key(0), batch, crop_padding=0, flip=False), batch)
