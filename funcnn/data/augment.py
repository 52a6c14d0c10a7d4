"""Data augmentation as pure, key-driven JAX functions, usable inside ``jit``.

Each function transforms one image ``(H, W, C)``; [`augment`][funcnn.data.augment.augment] vmaps them
over a batch with one key per example.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def random_crop(key: jax.Array, image: jax.Array, padding: int) -> jax.Array:
    """Zero-pad ``image`` by ``padding`` on each side and crop back to its size at a random offset.

    Args:
      key: a ``jax.random`` key.
      image: one image ``(H, W, C)``.
      padding: pixels of zeros added on every side (the largest shift).

    Returns:
      An image of the same shape, shifted by up to ``padding`` pixels.
    """
    height, width, channels = image.shape
    padded = jnp.pad(image, ((padding, padding), (padding, padding), (0, 0)))
    top, left = jax.random.randint(key, (2,), 0, 2 * padding + 1)
    zero = jnp.zeros((), top.dtype)
    return jax.lax.dynamic_slice(padded, (top, left, zero), (height, width, channels))


def random_flip(key: jax.Array, image: jax.Array) -> jax.Array:
    """Flip ``image`` left-right with probability 1/2.

    Args:
      key: a ``jax.random`` key.
      image: one image ``(H, W, C)``.

    Returns:
      The image, mirrored along its width or unchanged.
    """
    return jnp.where(jax.random.bernoulli(key), image[:, ::-1, :], image)


def augment(key: jax.Array, images: jax.Array, *, crop_padding: int = 2, flip: bool = True) -> jax.Array:
    """Random crop (with zero padding) and horizontal flip of every image in a batch.

    Args:
      key: a ``jax.random`` key; each example gets its own key split from it.
      images: a batch ``(N, H, W, C)``.
      crop_padding: the padding of [`random_crop`][funcnn.data.augment.random_crop]; ``0`` disables cropping.
      flip: whether to apply [`random_flip`][funcnn.data.augment.random_flip].

    Returns:
      The augmented batch, same shape and dtype.
    """

    def one(example_key: jax.Array, image: jax.Array) -> jax.Array:
        crop_key, flip_key = jax.random.split(example_key)
        if crop_padding:
            image = random_crop(crop_key, image, crop_padding)
        if flip:
            image = random_flip(flip_key, image)
        return image

    return jax.vmap(one)(jax.random.split(key, images.shape[0]), images)
