"""Resizing layers: ``Upsample`` (integer factors) and ``Resize`` (to a target spatial shape).

Both are ``funcnn.ops.resize.resize_forward`` with its hand-written VJP: along each spatial axis ``Y = A X``
for a small interpolation matrix ``A``, and ``dL/dX = A^T G``; the methods and where they differ from
``jax.image.resize`` are in [`funcnn.ops.resize`][funcnn.ops.resize.resize]. Values equal
``torch.nn.Upsample`` / ``torch.nn.functional.interpolate`` with ``align_corners=False``. Integer and bool
inputs are resized in the default float (or ``dtype``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax.numpy as jnp

from funcnn import checks
from funcnn.core import Layer
from funcnn.identity import make_layer
from funcnn.ops.resize import ResizeConfig, apply_resize, resize_method, resolve_resize, resolve_upsample


def _resize_layer(name: str, dtype, grad: str, resolve: Callable[[tuple[int, ...]], ResizeConfig]) -> Layer:
    def init(key, input_shape):
        config = resolve(input_shape)
        return (input_shape[0], *config.out_spatial, input_shape[-1]), (), ()

    def apply(params, state, x, *, key=None, train=False):
        checks.no_params(name, params)
        x = checks.input_array(name, x, dtype)
        return apply_resize(resolve(x.shape), x, grad), state

    return make_layer(name, init, apply)


def Upsample(
    scale: int | Sequence[int],
    method: str = "nearest",
    *,
    dtype: jnp.dtype | None = None,
    grad: str | None = None,
) -> Layer:
    """Upsample the spatial axes by integer factors: ``(N, *spatial, C) -> (N, *(n * scale), C)``.

    ``torch.nn.Upsample(scale_factor=scale, mode=method)`` (``align_corners=False``). Nearest
    repeats every input ``scale`` times along each axis and its backward sums each block; the
    decoder step of a U-Net, without the parameters of a transposed convolution.

    Args:
      scale: a positive int for every spatial axis, or one per axis (1 to 3). Only integers:
        for another ratio give the output size to [`Resize`][funcnn.layers.resize.Resize].
      method: ``"nearest"`` (PyTorch's default: input ``floor(d / scale)``), ``"nearest-exact"``,
        ``"linear"`` (also spelled ``"bilinear"`` or ``"trilinear"``; for any number of axes) or
        ``"bicubic"`` (PyTorch's kernel, ``a = -0.75``; for any number of axes).
      dtype: computation dtype; ``None`` keeps a floating input's dtype and resizes integers in
        the default float.
      grad: ``"custom"`` (hand-written rules, forward and reverse mode), ``"custom_vjp"`` (reverse mode
        only) or ``"autodiff"``; ``None`` takes the mode in force ([`grad_mode`][funcnn.core.grad_mode]).

    Shapes:
      Input ``(N, *spatial, C)``, channels last, 1 to 3 spatial axes (as many as ``scale`` has entries when it
        is a sequence).
      Output ``(N, *spatial', C)`` with ``spatial'[i] = spatial[i] * scale[i]``.

    Returns:
      The layer, an ``(init, apply)`` pair with no parameters and no state (``init`` gives ``()`` for both).

    Raises:
      LayerConfigError: at construction, when ``scale`` is not a positive int or 1 to 3 of them, ``method`` is
        not one of the names above, ``dtype`` is not a floating dtype JAX holds or ``grad`` is not one of its
        values. At ``init`` and when ``apply`` is traced, when the input's rank is not 3 to 5 or a sequence
        ``scale`` does not have one entry per spatial axis. When ``apply`` is traced, when ``params`` is not
        empty, or ``x`` is not a real array or has an empty spatial axis.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> layer = Upsample(2)
        >>> layer.init(jax.random.key(0), (-1, 14, 14, 8))[0]
        (-1, 28, 28, 8)
    """
    scale = checks.sizes("Upsample", "scale", scale)
    method = resize_method("Upsample", method)
    dtype = checks.dtype_or_none("Upsample", "dtype", dtype)
    grad = checks.grad_mode("Upsample", grad)
    return _resize_layer(
        "Upsample", dtype, grad, lambda shape: resolve_upsample("Upsample", method, scale, shape)
    )


def Resize(
    shape: int | Sequence[int],
    method: str = "nearest",
    *,
    dtype: jnp.dtype | None = None,
    grad: str | None = None,
) -> Layer:
    """Resize the spatial axes to ``shape``, up or down: ``(N, *spatial, C) -> (N, *shape, C)``.

    ``torch.nn.functional.interpolate(x, size=shape, mode=method, align_corners=False)``; no
    antialiasing when downsampling (PyTorch's default; ``jax.image.resize`` antialiases unless
    ``antialias=False``).

    Args:
      shape: the output's spatial sizes: a positive int for every axis, or one per axis (as
        many as the input has).
      method: ``"nearest"`` (PyTorch's default: input ``floor(d n / m)``), ``"nearest-exact"``
        (``floor((d + 1/2) n / m)``, as ``jax.image.resize``'s ``"nearest"``), ``"linear"``
        (also spelled ``"bilinear"`` or ``"trilinear"``; for any number of axes) or
        ``"bicubic"`` (PyTorch's kernel, ``a = -0.75``; for any number of axes).
      dtype: computation dtype; ``None`` keeps a floating input's dtype and resizes integers in
        the default float.
      grad: ``"custom"`` (hand-written rules, forward and reverse mode), ``"custom_vjp"`` (reverse mode
        only) or ``"autodiff"``; ``None`` takes the mode in force ([`grad_mode`][funcnn.core.grad_mode]).

    Shapes:
      Input ``(N, *spatial, C)``, channels last, 1 to 3 spatial axes (as many as ``shape`` has entries when it
        is a sequence).
      Output ``(N, *shape, C)``, an int ``shape`` on every spatial axis.

    Returns:
      The layer, an ``(init, apply)`` pair with no parameters and no state (``init`` gives ``()`` for both).

    Raises:
      LayerConfigError: at construction, when ``shape`` is not a positive int or 1 to 3 of them, ``method`` is
        not one of the names above, ``dtype`` is not a floating dtype JAX holds or ``grad`` is not one of its
        values. At ``init`` and when ``apply`` is traced, when the input's rank is not 3 to 5 or a sequence
        ``shape`` does not have one entry per spatial axis. When ``apply`` is traced, when ``params`` is not
        empty, or ``x`` is not a real array or has an empty spatial axis.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> layer = Resize((20, 30), "bilinear")
        >>> layer.init(jax.random.key(0), (-1, 28, 28, 3))[0]
        (-1, 20, 30, 3)
    """
    shape = checks.sizes("Resize", "shape", shape)
    method = resize_method("Resize", method)
    dtype = checks.dtype_or_none("Resize", "dtype", dtype)
    grad = checks.grad_mode("Resize", grad)
    return _resize_layer(
        "Resize", dtype, grad, lambda x_shape: resolve_resize("Resize", method, shape, x_shape)
    )
