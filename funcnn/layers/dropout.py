"""``Dropout(rate)``: in training, zero each input with probability ``rate``."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from funcnn.core import Layer, LayerConfigError


def Dropout(rate: float) -> Layer:
    """Inverted dropout: ``y = x * m / (1 - rate)`` with ``m ~ Bernoulli(1 - rate)``.

    ``rate`` is the probability of dropping (zeroing) an input, as in PyTorch
    and Flax (not stax's keep probability). Outside training it is the
    identity. In training it needs ``apply(..., key=key, train=True)``.
    """
    if not isinstance(rate, (int, float)) or not 0.0 <= rate < 1.0:
        raise LayerConfigError(f"Dropout: argument `rate` must be in [0, 1), got {rate!r}")

    def init(key, input_shape):
        return tuple(input_shape), (), ()

    def apply(params, state, x, *, key=None, train=False):
        if not train or rate == 0.0:
            return x, state
        if key is None:
            raise LayerConfigError(
                f"Dropout: argument `key` is required when train=True (rate={rate}, x.shape={x.shape}); "
                "pass apply(..., key=jax.random.key(...), train=True)"
            )
        keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
        return jnp.where(keep, x / jnp.asarray(1.0 - rate, x.dtype), jnp.zeros((), x.dtype)), state

    return Layer(init, apply)
