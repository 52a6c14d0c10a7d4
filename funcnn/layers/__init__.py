"""Layer constructors, one module per family; each returns a ``Layer``."""

from funcnn.layers.activations import Elu, Gelu, LeakyRelu, LogSoftmax, Relu, Sigmoid, Softmax, Tanh
from funcnn.layers.conv import Conv, ConvTranspose, FixedConv
from funcnn.layers.dense import Dense
from funcnn.layers.dropout import Dropout, SpatialDropout
from funcnn.layers.norm import BatchNorm, BatchNormState, GroupNorm, InstanceNorm, LayerNorm, RMSNorm
from funcnn.layers.pool import AvgPool, GlobalAvgPool, GlobalMaxPool, MaxPool
from funcnn.layers.reshape import Flatten
from funcnn.layers.resize import Resize, Upsample

__all__ = [
    "AvgPool",
    "BatchNorm",
    "BatchNormState",
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
    "InstanceNorm",
    "LayerNorm",
    "LeakyRelu",
    "LogSoftmax",
    "MaxPool",
    "RMSNorm",
    "Relu",
    "Resize",
    "Sigmoid",
    "Softmax",
    "SpatialDropout",
    "Tanh",
    "Upsample",
]
