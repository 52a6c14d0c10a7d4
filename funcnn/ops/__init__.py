"""Pure array functions, each with hand-written derivative rules: a VJP and a JVP.

Every op takes ``grad="custom"`` (default: the hand-written JVP for forward
mode, the hand-written VJP, its transpose, for reverse mode;
``funcnn.ops._rules``), ``grad="custom_vjp"`` (the same VJP through
``jax.custom_vjp``, reverse mode only) or ``grad="autodiff"`` (JAX
differentiates the forward pass).
"""

from funcnn.ops.activations import (
    celu,
    elu,
    gelu,
    hard_sigmoid,
    hard_silu,
    leaky_relu,
    log_sigmoid,
    log_softmax,
    prelu,
    relu,
    relu6,
    selu,
    sigmoid,
    silu,
    softmax,
    softplus,
    softsign,
    tanh,
)
from funcnn.ops.adaptive_pool import adaptive_avg_pool, adaptive_max_pool
from funcnn.ops.conv import conv, conv_transpose
from funcnn.ops.dense import dense
from funcnn.ops.norm import standardize
from funcnn.ops.pool import avg_pool, max_pool, max_unpool
from funcnn.ops.resize import resize, upsample

__all__ = [
    "adaptive_avg_pool",
    "adaptive_max_pool",
    "avg_pool",
    "celu",
    "conv",
    "conv_transpose",
    "dense",
    "elu",
    "gelu",
    "hard_sigmoid",
    "hard_silu",
    "leaky_relu",
    "log_sigmoid",
    "log_softmax",
    "max_pool",
    "max_unpool",
    "prelu",
    "relu",
    "relu6",
    "resize",
    "selu",
    "sigmoid",
    "silu",
    "softmax",
    "softplus",
    "softsign",
    "standardize",
    "tanh",
    "upsample",
]
