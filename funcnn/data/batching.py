"""Seeded shuffling, batching and scaling of image arrays.

Every epoch gets its own permutation, drawn from a numpy ``Generator`` seeded
with ``(seed, epoch)``: runs are reproducible, and a run resumed at epoch
``e`` draws exactly the batches an uninterrupted run would.
"""

from __future__ import annotations

from collections.abc import Iterator

import jax
import jax.numpy as jnp
import numpy as np

FASHION_MNIST_MEAN = 0.2860
"""Mean pixel value of the Fashion-MNIST training images, scaled to [0, 1]."""

FASHION_MNIST_STD = 0.3530
"""Standard deviation of the Fashion-MNIST training pixels, scaled to [0, 1]."""


def epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    """The order in which epoch ``epoch`` visits ``n`` examples.

    Args:
      seed: the run's seed (non-negative).
      epoch: the epoch index, from 0.
      n: the number of examples.

    Returns:
      A permutation of ``range(n)``, the same for the same arguments.
    """
    return np.random.default_rng((seed, epoch)).permutation(n)


def batch_indices(seed: int, epoch: int, n: int, batch_size: int) -> np.ndarray:
    """Example indices of every batch of one epoch; the incomplete last batch is dropped.

    Args:
      seed: the run's seed (non-negative).
      epoch: the epoch index, from 0.
      n: the number of examples.
      batch_size: examples per batch, at most ``n``.

    Returns:
      An ``int32`` array of shape ``(n // batch_size, batch_size)``.

    Raises:
      ValueError: ``batch_size`` is not in ``1..n``.
    """
    if not 1 <= batch_size <= n:
        raise ValueError(f"batch_size must be between 1 and the number of examples ({n}), got {batch_size}")
    steps = n // batch_size
    order = epoch_permutation(seed, epoch, n)[: steps * batch_size]
    return order.reshape(steps, batch_size).astype(np.int32)


def iterate_batches(
    images: np.ndarray, labels: np.ndarray, batch_size: int, *, seed: int, epoch: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield the shuffled ``(images, labels)`` batches of one epoch.

    Args:
      images: all examples, batch first.
      labels: their labels.
      batch_size: examples per batch; the incomplete last batch is dropped.
      seed: the run's seed.
      epoch: the epoch index, from 0.

    Yields:
      ``(images[idx], labels[idx])`` for each batch's indices ``idx``.
    """
    for idx in batch_indices(seed, epoch, len(images), batch_size):
        yield images[idx], labels[idx]


def scale_images(images: jax.Array, *, mean: float = 0.0, std: float = 1.0) -> jax.Array:
    """Scale ``uint8`` images to ``float32`` and add a channel axis when there is none.

    ``(images / 255 - mean) / std`` for integer pixels; floating images are
    taken as already scaled: ``(images - mean) / std``. The defaults give
    values in [0, 1] for pixels, and ``mean=FASHION_MNIST_MEAN,
    std=FASHION_MNIST_STD`` standardises. Usable inside ``jit``.

    Args:
      images: ``(N, H, W)`` or ``(N, H, W, C)``: integer pixel values 0-255, or floating images.
      mean: subtracted after scaling to [0, 1].
      std: divides after subtracting the mean.

    Returns:
      ``float32`` images of shape ``(N, H, W, C)`` (``C = 1`` when added).
    """
    images = jnp.asarray(images)
    x = images.astype(jnp.float32)
    if x.ndim == 3:
        x = x[..., None]
    if not jnp.issubdtype(images.dtype, jnp.floating):
        x = x / 255.0
    return (x - mean) / std
