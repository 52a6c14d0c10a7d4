"""The ``grad`` switch shared by every op: hand-written VJP or JAX autodiff."""

from __future__ import annotations

from collections.abc import Callable

from funcnn.core import LayerConfigError

GRAD_MODES = ("custom", "autodiff")


def select(op: str, grad: str, custom: Callable, autodiff: Callable) -> Callable:
    """Return ``custom`` (the ``jax.custom_vjp`` function) or ``autodiff`` (the plain forward).

    ``grad="custom"`` differentiates with the hand-written rule; ``"autodiff"``
    lets JAX differentiate the forward pass, which is the reference and the
    way to forward mode (``jvp``, ``jacfwd``), which ``custom_vjp`` cannot do.
    """
    if grad == "custom":
        return custom
    if grad == "autodiff":
        return autodiff
    raise LayerConfigError(f"{op}: argument `grad` must be one of {GRAD_MODES}, got {grad!r}")
