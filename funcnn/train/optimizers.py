"""Optimisers by name, with an optional cosine learning-rate decay (optax)."""

from __future__ import annotations

import optax

OPTIMIZERS = ("adam", "sgd", "adamw")
"""The names [`make_optimizer`][funcnn.train.optimizers.make_optimizer] accepts."""


def make_optimizer(
    name: str, learning_rate: float, *, decay_steps: int | None = None, weight_decay: float = 1e-4
) -> optax.GradientTransformation:
    """An optax optimiser: ``adam``, ``sgd`` (momentum 0.9, Nesterov) or ``adamw``.

    Args:
      name: one of [`OPTIMIZERS`][funcnn.train.optimizers.OPTIMIZERS].
      learning_rate: the peak learning rate.
      decay_steps: when given, the rate follows a cosine decay from
        ``learning_rate`` to 0 over this many steps; constant otherwise.
      weight_decay: the decoupled weight decay of ``adamw``.

    Returns:
      The optimiser.

    Raises:
      ValueError: unknown ``name``, a ``learning_rate`` that is not positive, or a
        ``decay_steps`` that is not positive (from ``optax.cosine_decay_schedule``).
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")
    if not learning_rate > 0:
        raise ValueError(f"learning rate must be positive, got {learning_rate}")
    rate = learning_rate_schedule(learning_rate, decay_steps)
    if name == "adam":
        return optax.adam(rate)
    if name == "adamw":
        return optax.adamw(rate, weight_decay=weight_decay)
    return optax.sgd(rate, momentum=0.9, nesterov=True)


def learning_rate_schedule(learning_rate: float, decay_steps: int | None = None) -> optax.ScalarOrSchedule:
    """The rate [`make_optimizer`][funcnn.train.optimizers.make_optimizer] uses: ``learning_rate``, or with
    ``decay_steps`` a cosine decay from it to 0 over that many steps (``optax.cosine_decay_schedule``).

    Args:
      learning_rate: the constant rate, or the rate at step 0 of the decay (not checked here).
      decay_steps: the steps over which the rate decays to 0, where it then stays; ``None`` for a
        constant rate.

    Returns:
      ``learning_rate`` itself when ``decay_steps`` is ``None``, else an optax schedule, a function
      of the step count giving the rate.

    Raises:
      ValueError: ``decay_steps`` is not positive (from ``optax.cosine_decay_schedule``).
    """
    return learning_rate if decay_steps is None else optax.cosine_decay_schedule(learning_rate, decay_steps)
