"""The ``grad`` switch shared by every op: hand-written VJP or JAX autodiff."""

from __future__ import annotations

from collections.abc import Callable


def select(grad: str, custom: Callable, autodiff: Callable) -> Callable:
    """Return ``custom`` (the ``jax.custom_vjp`` function) or ``autodiff`` (the plain forward).

    ``grad`` was checked by :func:`funcnn.checks.grad_mode` where the user gave it.
    ``grad="custom"`` differentiates with the hand-written rule; ``"autodiff"``
    lets JAX differentiate the forward pass, which is the reference and the
    way to forward mode (``jvp``, ``jacfwd``), which ``custom_vjp`` cannot do.
    """
    return custom if grad == "custom" else autodiff
