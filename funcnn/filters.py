"""Classic image filters as fixed kernels, shaped HWIO ``(kh, kw, 1, 1)`` for ``FixedConv``.

Convolution in deep learning is cross-correlation (the kernel is not
flipped), so a kernel reads as "the weights laid over the image".

Examples:
    >>> import jax.numpy as jnp, funcnn as fn
    >>> image = jnp.zeros((1, 8, 8, 1)).at[:, :, 4:, :].set(1.0)   # a vertical step edge
    >>> edges, _ = fn.FixedConv(sobel(1)).apply((), (), image)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from funcnn import checks
from funcnn.core import LayerConfigError


def _hwio(kernel_2d: np.ndarray) -> jax.Array:
    return jnp.asarray(kernel_2d, jnp.float32)[:, :, None, None]


def sobel(axis: int) -> jax.Array:
    """Sobel derivative along ``axis`` (0: rows, finds horizontal edges; 1: columns, vertical edges).

    ``[[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]`` for ``axis=1`` (its transpose for
    ``axis=0``): a central difference smoothed by ``[1, 2, 1]`` across it.

    Args:
      axis: the image axis to differentiate along: 0 (rows) or 1 (columns).

    Returns:
      The kernel, a float32 array of shape ``(3, 3, 1, 1)`` (HWIO).

    Raises:
      LayerConfigError: when ``axis`` is not the int 0 or 1 (a bool or a float is refused).
    """
    if not checks.is_int(axis) or axis not in (0, 1):
        raise LayerConfigError(f"sobel: argument `axis` must be 0 or 1, got {axis!r}")
    kernel = np.outer([1.0, 2.0, 1.0], [-1.0, 0.0, 1.0])
    return _hwio(kernel if axis == 1 else kernel.T)


def gaussian(size: int, sigma: float) -> jax.Array:
    """Gaussian blur ``w(i, j) = exp(-(i^2 + j^2) / (2 sigma^2))``, normalised to sum 1.

    ``i, j`` run over ``-(size - 1)/2 ... (size - 1)/2``. Summing to 1 makes
    it preserve the mean of an image (away from the borders).

    Args:
      size: kernel side length, a positive int; an even size centres the kernel between pixels.
      sigma: the standard deviation in pixels, positive.

    Returns:
      The kernel, a float32 array of shape ``(size, size, 1, 1)`` (HWIO) summing to 1.

    Raises:
      LayerConfigError: when ``size`` is not a positive int (NumPy ints allowed, bools refused), or
        ``sigma`` is not a positive finite real number.
    """
    size = checks.positive_int("gaussian", "size", size)
    sigma = checks.real("gaussian", "sigma", sigma, low=0.0, low_open=True)
    offsets = np.arange(size) - (size - 1) / 2
    profile = np.exp(-(offsets**2) / (2 * sigma**2))
    kernel = np.outer(profile, profile)
    return _hwio(kernel / kernel.sum())


def sharpen() -> jax.Array:
    """Sharpen: ``[[0, -1, 0], [-1, 5, -1], [0, -1, 0]]`` (identity minus the Laplacian); sums to 1.

    Returns:
      The kernel, a float32 array of shape ``(3, 3, 1, 1)`` (HWIO).
    """
    return _hwio(np.array([[0.0, -1.0, 0.0], [-1.0, 5.0, -1.0], [0.0, -1.0, 0.0]]))


def laplacian() -> jax.Array:
    """Discrete Laplacian ``[[0, 1, 0], [1, -4, 1], [0, 1, 0]]``: zero on flat regions and ramps.

    Returns:
      The kernel, a float32 array of shape ``(3, 3, 1, 1)`` (HWIO).
    """
    return _hwio(np.array([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]))


def box_blur(size: int) -> jax.Array:
    """Box blur: the ``size x size`` mean, every weight ``1 / size^2``.

    Args:
      size: kernel side length, a positive int.

    Returns:
      The kernel, a float32 array of shape ``(size, size, 1, 1)`` (HWIO).

    Raises:
      LayerConfigError: when ``size`` is not a positive int (NumPy ints allowed, bools refused).
    """
    size = checks.positive_int("box_blur", "size", size)
    return _hwio(np.full((size, size), 1.0 / size**2))
