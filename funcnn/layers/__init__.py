"""Layer constructors, one module per family; each returns a ``Layer``."""

from funcnn.layers.activations import (
    Celu,
    Elu,
    Gelu,
    HardSigmoid,
    HardSilu,
    LeakyRelu,
    LogSigmoid,
    LogSoftmax,
    PRelu,
    Relu,
    Relu6,
    Selu,
    Sigmoid,
    Silu,
    Softmax,
    Softplus,
    Softsign,
    Tanh,
)
from funcnn.layers.adaptive_pool import AdaptiveAvgPool, AdaptiveMaxPool
from funcnn.layers.conv import Conv, ConvTranspose, FixedConv
from funcnn.layers.dense import Dense
from funcnn.layers.dropout import Dropout, SpatialDropout
from funcnn.layers.norm import BatchNorm, BatchNormState, GroupNorm, InstanceNorm, LayerNorm, RMSNorm
from funcnn.layers.pool import AvgPool, GlobalAvgPool, GlobalMaxPool, MaxPool, MaxUnpool
from funcnn.layers.reshape import Flatten
from funcnn.layers.resize import Resize, Upsample

__all__ = [
    "AdaptiveAvgPool",
    "AdaptiveMaxPool",
    "AvgPool",
    "BatchNorm",
    "BatchNormState",
    "Celu",
    "Conv",
    "ConvTranspose",
    "Dense",
    "Dropout",
    "Elu",
    "FixedConv",
    "Flatten",
    "Gelu",
    "GlobalAvgPool",
    "GlobalMaxPool",
    "GroupNorm",
    "HardSigmoid",
    "HardSilu",
    "InstanceNorm",
    "LayerNorm",
    "LeakyRelu",
    "LogSigmoid",
    "LogSoftmax",
    "MaxPool",
    "MaxUnpool",
    "PRelu",
    "RMSNorm",
    "Relu",
    "Relu6",
    "Resize",
    "Selu",
    "Sigmoid",
    "Silu",
    "Softmax",
    "Softplus",
    "Softsign",
    "SpatialDropout",
    "Tanh",
    "Upsample",
]
