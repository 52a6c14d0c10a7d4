"""Fully connected (dense) layer op with a hand-written VJP.

Forward: ``Y = X W + b`` with ``X`` of shape ``(..., n_in)``, ``W`` of shape
``(n_in, n_out)`` and ``b`` of shape ``(n_out,)``.

Backward (``G = dL/dY``, leading axes flattened into one batch axis)::

    dL/dX = G W^T          (..., n_in)
    dL/dW = X^T G          (n_in, n_out), summed over the batch
    dL/db = sum_batch G    (n_out,)
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from funcnn import checks
from funcnn.core import LayerConfigError
from funcnn.ops._grad import cotangents_like
from funcnn.ops._rules import HandWritten
from funcnn.ops.conv import check_bias


def _dense_forward(precision, x, kernel, bias):
    y = lax.dot_general(x, kernel, (((x.ndim - 1,), (0,)), ((), ())), precision=precision)
    return y if bias is None else y + lax.broadcast_to_rank(bias, y.ndim)


def _dense_fwd(precision, x, kernel, bias):
    return _dense_forward(precision, x, kernel, bias), (x, kernel, bias)


def _dense_bwd(precision, saved, g):
    return cotangents_like(functools.partial(_dense_cotangents, precision), saved, *saved, g)


def _dense_cotangents(precision, x, kernel, bias, g):
    batch_axes = tuple(range(x.ndim - 1))
    # dX = G W^T: contract G's last axis with W's output axis.
    dx = lax.dot_general(g, kernel, (((g.ndim - 1,), (1,)), ((), ())), precision=precision)
    # dW = X^T G: contract every batch axis of X and G.
    dw = lax.dot_general(x, g, ((batch_axes, batch_axes), ((), ())), precision=precision)
    db = None if bias is None else jnp.sum(g, axis=batch_axes).astype(bias.dtype)
    return dx.astype(x.dtype), dw.astype(kernel.dtype), db


def _dense_jvp(precision, saved, tangents):
    """``dY = dX W + X dW + dB``: the product is bilinear and the bias adds (zero tangents left out)."""
    x, kernel, bias = saved
    dx, dkernel, dbias = tangents
    terms = []
    if dx is not None:
        terms.append(_dense_forward(precision, dx, kernel, None))
    if dkernel is not None:
        terms.append(_dense_forward(precision, x, dkernel, None))
    if not terms:  # only the bias moves
        return jnp.broadcast_to(dbias, (*x.shape[:-1], kernel.shape[1]))
    dy = functools.reduce(lax.add, terms)
    return dy if dbias is None else dy + lax.broadcast_to_rank(dbias, dy.ndim)


DENSE_RULES = HandWritten("dense", _dense_forward, _dense_fwd, _dense_bwd, _dense_jvp)
"""The dense layer's hand-written rules."""


def check_dense(op: str, x_shape: tuple[int, ...], kernel_shape: tuple[int, ...], bias_shape) -> None:
    """``x (..., n_in)``, ``kernel (n_in, n_out)``, ``bias (n_out,)`` or ``None``."""
    if len(kernel_shape) != 2 or len(x_shape) < 1 or x_shape[-1] != kernel_shape[0]:
        raise LayerConfigError(
            f"{op}: argument `x` has shape {tuple(x_shape)} but the kernel has shape {tuple(kernel_shape)}; "
            "expected x.shape[-1] == kernel.shape[0] and a 2-D kernel"
        )
    check_bias(op, bias_shape, kernel_shape[1])


def apply_dense(precision, x: jax.Array, kernel: jax.Array, bias: jax.Array | None, grad: str) -> jax.Array:
    """``x @ kernel + bias`` for checked operands of one dtype."""
    return DENSE_RULES.select(grad)(precision, x, kernel, bias)


def dense(
    x: jax.Array,
    kernel: jax.Array,
    bias: jax.Array | None = None,
    *,
    precision: lax.Precision | None = None,
    grad: str | None = None,
) -> jax.Array:
    """``x @ kernel + bias`` over the last axis of ``x``.

    Integer or bool operands are promoted to the floating operands' dtype;
    complex operands are refused.

    Args:
      x: input, shape ``(..., n_in)``: any leading axes (none for one vector), features last.
      kernel: weights, shape ``(n_in, n_out)``.
      bias: optional, shape ``(n_out,)``; ``None`` (the default) adds nothing.
      precision: passed to ``lax.dot_general`` in the forward and backward passes: ``None``, a
        ``lax.Precision`` or its name (``"highest"``), a ``lax.DotAlgorithmPreset``, or a pair of
        them.
      grad: ``"custom"`` (hand-written VJP and JVP), ``"custom_vjp"`` or ``"autodiff"``; ``None``
        takes the mode in force ([`funcnn.grad_mode`][funcnn.core.grad_mode], ``"custom"`` outside it).

    Returns:
      ``(..., n_out)``, ``x``'s leading axes with ``n_out`` features, in the dtype the operands are
        cast to: the widest floating operand's (``float32`` for ``float16`` with ``bfloat16``), the
        default float when all are integer or bool.

    Raises:
      LayerConfigError: when the op is called (at trace time under ``jit``) if ``grad`` is not
        ``None``, ``"custom"``, ``"custom_vjp"`` or ``"autodiff"``; ``precision`` is none of the
        above; ``x``, ``kernel`` or a given ``bias`` is not an array or a number (``None``, a list
        or a tuple is refused) or has a complex or non-numeric dtype; ``kernel`` is not 2-D or
        ``x.shape[-1] != kernel.shape[0]`` (a 0-d ``x`` included); or ``bias`` is not ``None`` and
        its shape is not ``(n_out,)``.
    """
    checks.grad_mode("dense", grad)
    precision = checks.precision("dense", precision)
    x, kernel, bias = checks.promote_operands("dense", ("x", "kernel", "bias"), x, kernel, bias)
    check_dense("dense", x.shape, kernel.shape, None if bias is None else bias.shape)
    return apply_dense(precision, x, kernel, bias, grad)
