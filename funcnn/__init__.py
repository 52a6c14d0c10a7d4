"""funcnn: convolutional neural networks as pure ``(init, apply)`` functions in JAX.

Public re-exports only; see ``DESIGN.md`` for the contract.
"""

from funcnn import filters, models, ops, shapes
from funcnn.combinators import fan_in_concat, fan_in_sum, fan_out, parallel, residual, serial
from funcnn.core import ApplyFn, InitFn, Layer, LayerConfigError, Shape
from funcnn.layers import (
    AvgPool,
    BatchNorm,
    BatchNormState,
    Conv,
    ConvTranspose,
    Dense,
    Dropout,
    Elu,
    FixedConv,
    Flatten,
    Gelu,
    GlobalAvgPool,
    GlobalMaxPool,
    GroupNorm,
    LayerNorm,
    LeakyRelu,
    LogSoftmax,
    MaxPool,
    Relu,
    Sigmoid,
    Softmax,
    Tanh,
)
from funcnn.shapes import count_params, num_neurons, summary

__version__ = "0.1.0"

__all__ = [
    "ApplyFn",
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
    "InitFn",
    "Layer",
    "LayerConfigError",
    "LayerNorm",
    "LeakyRelu",
    "LogSoftmax",
    "MaxPool",
    "Relu",
    "Shape",
    "Sigmoid",
    "Softmax",
    "Tanh",
    "count_params",
    "fan_in_concat",
    "fan_in_sum",
    "fan_out",
    "filters",
    "models",
    "num_neurons",
    "ops",
    "parallel",
    "residual",
    "serial",
    "shapes",
    "summary",
]
