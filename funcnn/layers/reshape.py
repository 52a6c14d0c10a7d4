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

    Shapes:
      Input ``(N, d1, ..., dk)``, rank 2 to 7 (``k`` from 1 to 6).
      Output ``(N, d1 * ... * dk)``, in the input's dtype (integer and bool inputs stay so).

    Returns:
      The layer, an ``(init, apply)`` pair with no parameters and no state (``init`` gives ``()`` for both).

    Raises:
      LayerConfigError: at ``init``, when ``key`` is not a PRNG key, ``input_shape`` is not a shape of
        positive sizes (the batch may be ``-1``) or its rank is not 2 to 7; when ``apply`` is traced, when
        ``x``'s rank is not 2 to 7, ``params`` is not empty or ``x`` is complex, non-numeric, or a list or
        tuple rather than an array.
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
