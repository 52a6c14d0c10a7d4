"""``Dropout(rate)``: in training, zero each input with probability ``rate``."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from funcnn import checks
from funcnn.core import Layer, LayerConfigError
from funcnn.identity import make_layer


def Dropout(rate: float, *, dtype: jnp.dtype | None = None) -> Layer:
    """Inverted dropout: ``y = x * m / (1 - rate)`` with ``m ~ Bernoulli(1 - rate)``.

    ``rate`` is the probability of dropping (zeroing) an input, as in PyTorch
    and Flax (not stax's keep probability), any real scalar in ``[0, 1)``.
    Outside training it is the identity (integer inputs still become
    floating, as everywhere). In training it needs ``apply(..., key=key, train=True)``.
    """
    rate = checks.real("Dropout", "rate", rate, low=0.0, high=1.0, high_open=True)
    dtype = checks.dtype_or_none("Dropout", "dtype", dtype)

    def init(key, input_shape):
        return tuple(input_shape), (), ()

    def apply(params, state, x, *, key=None, train=False):
        checks.no_params("Dropout", params)
        x = checks.input_array("Dropout", x, dtype)
        if not checks.boolean("Dropout", "train", train) or rate == 0.0:
            return x, state
        if key is None:
            raise LayerConfigError(
                f"Dropout: argument `key` is required when train=True (rate={rate}, x.shape={x.shape}); "
                "pass apply(..., key=jax.random.key(...), train=True)"
            )
        checks.check_key("Dropout", key)
        keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
        return jnp.where(keep, x / jnp.asarray(1.0 - rate, x.dtype), jnp.zeros((), x.dtype)), state

    return make_layer("Dropout", init, apply)
