"""The ``grad`` switch shared by every op: hand-written VJP or JAX autodiff."""

from __future__ import annotations

from collections.abc import Callable

from funcnn.core import LayerConfigError

GRAD_MODES = ("custom", "autodiff")


def check_grad(op: str, grad: str) -> None:
    """Raise ``LayerConfigError`` unless ``grad`` is ``"custom"`` or ``"autodiff"``."""
    if grad not in GRAD_MODES:
        raise LayerConfigError(f"{op}: argument `grad` must be one of {GRAD_MODES}, got {grad!r}")


def select(op: str, grad: str, custom: Callable, autodiff: Callable) -> Callable:
    """Return ``custom`` (the ``jax.custom_vjp`` function) or ``autodiff`` (the plain forward).

    ``grad="custom"`` differentiates with the hand-written rule; ``"autodiff"``
    lets JAX differentiate the forward pass, which is the reference and the
    way to forward mode (``jvp``, ``jacfwd``), which ``custom_vjp`` cannot do.
    """
    check_grad(op, grad)
    return custom if grad == "custom" else autodiff
