"""``Flatten``: ``(N, d1, d2, ...) -> (N, d1 * d2 * ...)``, between conv and dense layers."""

from __future__ import annotations

import math

import jax.numpy as jnp

from funcnn import checks
from funcnn.core import Layer
from funcnn.identity import make_layer

_RANKS = (2, 3, 4, 5, 6, 7)


def Flatten() -> Layer:
    """Flatten every axis but the batch; the width is
    [`funcnn.shapes.num_neurons`][funcnn.shapes.num_neurons].

    A pure reshape: the dtype is kept (no arithmetic, so no promotion).
    """

    def init(key, input_shape):
        checks.check_rank("Flatten", "x", input_shape, _RANKS)
        return (input_shape[0], math.prod(input_shape[1:])), (), ()

    def apply(params, state, x, *, key=None, train=False):
        checks.no_params("Flatten", params)
        x = checks.as_array("Flatten", x)
        checks.check_rank("Flatten", "x", x.shape, _RANKS)
        return jnp.reshape(x, (x.shape[0], math.prod(x.shape[1:]))), state

    return make_layer("Flatten", init, apply)
