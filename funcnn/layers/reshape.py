"""``Flatten``: ``(N, d1, d2, ...) -> (N, d1 * d2 * ...)``, between conv and dense layers."""

from __future__ import annotations

import math

import jax.numpy as jnp

from funcnn.core import Layer, check_rank


def Flatten() -> Layer:
    """Flatten every axis but the batch; the width is :func:`funcnn.shapes.num_neurons`."""

    def init(key, input_shape):
        check_rank("Flatten", "x", input_shape, tuple(range(2, 8)))
        return (input_shape[0], math.prod(input_shape[1:])), (), ()

    def apply(params, state, x, *, key=None, train=False):
        check_rank("Flatten", "x", x.shape, tuple(range(2, 8)))
        return jnp.reshape(x, (x.shape[0], math.prod(x.shape[1:]))), state

    return Layer(init, apply)
