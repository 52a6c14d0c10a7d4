"""Pure array functions, each with a hand-written ``jax.custom_vjp`` rule.

Every op takes ``grad="custom"`` (the hand-written VJP, default) or
``grad="autodiff"`` (JAX differentiates the forward pass).
"""

from funcnn.ops.activations import elu, gelu, leaky_relu, log_softmax, relu, sigmoid, softmax, tanh
from funcnn.ops.conv import conv, conv_transpose
from funcnn.ops.dense import dense
from funcnn.ops.norm import standardize
from funcnn.ops.pool import avg_pool, max_pool
from funcnn.ops.resize import resize, upsample

__all__ = [
    "avg_pool",
    "conv",
    "conv_transpose",
    "dense",
    "elu",
    "gelu",
    "leaky_relu",
    "log_softmax",
    "max_pool",
    "relu",
    "resize",
    "sigmoid",
    "softmax",
    "standardize",
    "tanh",
    "upsample",
]
