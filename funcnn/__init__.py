"""funcnn: convolutional neural networks as pure ``(init, apply)`` functions in JAX.

Public re-exports only; see ``DESIGN.md`` for the contract. The names load
lazily (PEP 562), so ``import funcnn`` and ``funcnn --help`` do not import
JAX until a name that needs it is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

_SUBMODULES = ("filters", "labels", "models", "ops", "shapes")
_NAMES = {
    "funcnn.combinators": ("fan_in_concat", "fan_in_sum", "fan_out", "parallel", "residual", "serial"),
    "funcnn.core": ("ApplyFn", "InitFn", "Layer", "LayerConfigError", "Shape", "grad_mode"),
    "funcnn.layers": (
        "AdaptiveAvgPool", "AdaptiveMaxPool", "AvgPool", "BatchNorm", "BatchNormState", "Celu", "Conv",
        "ConvTranspose", "Dense", "Dropout", "Elu", "FixedConv", "Flatten", "Gelu", "GlobalAvgPool",
        "GlobalMaxPool", "GroupNorm", "HardSigmoid", "HardSilu", "InstanceNorm", "LayerNorm", "LeakyRelu",
        "LogSigmoid", "LogSoftmax", "MaxPool", "MaxUnpool", "PRelu", "RMSNorm", "Relu", "Relu6", "Resize",
        "Selu", "Sigmoid", "Silu", "Softmax", "Softplus", "Softsign", "SpatialDropout", "Tanh", "Upsample",
    ),
    "funcnn.shapes": ("count_params", "num_neurons", "summary"),
    "funcnn.taps": ("features",),
}  # fmt: skip
_MODULE_OF = {name: module for module, names in _NAMES.items() for name in names}

__all__ = [
    "AdaptiveAvgPool", "AdaptiveMaxPool", "ApplyFn", "AvgPool", "BatchNorm", "BatchNormState", "Celu",
    "Conv", "ConvTranspose", "Dense", "Dropout", "Elu", "FixedConv", "Flatten", "Gelu", "GlobalAvgPool",
    "GlobalMaxPool", "GroupNorm", "HardSigmoid", "HardSilu", "InitFn", "InstanceNorm", "Layer",
    "LayerConfigError", "LayerNorm", "LeakyRelu", "LogSigmoid", "LogSoftmax", "MaxPool", "MaxUnpool",
    "PRelu", "RMSNorm", "Relu", "Relu6", "Resize", "Selu", "Shape", "Sigmoid", "Silu", "Softmax",
    "Softplus", "Softsign", "SpatialDropout", "Tanh", "Upsample", "count_params", "fan_in_concat",
    "fan_in_sum", "fan_out", "features", "filters", "grad_mode", "labels", "models", "num_neurons", "ops",
    "parallel", "residual", "serial", "shapes", "summary",
]  # fmt: skip


def __getattr__(name: str) -> Any:
    """Import a public name (or submodule) on first use."""
    if name in _MODULE_OF:
        value = getattr(importlib.import_module(_MODULE_OF[name]), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"funcnn.{name}")
    else:
        raise AttributeError(f"module 'funcnn' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])


if TYPE_CHECKING:
    from funcnn import filters, labels, models, ops, shapes
    from funcnn.combinators import fan_in_concat, fan_in_sum, fan_out, parallel, residual, serial
    from funcnn.core import ApplyFn, InitFn, Layer, LayerConfigError, Shape, grad_mode
    from funcnn.layers import (
        AdaptiveAvgPool,
        AdaptiveMaxPool,
        AvgPool,
        BatchNorm,
        BatchNormState,
        Celu,
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
        HardSigmoid,
        HardSilu,
        InstanceNorm,
        LayerNorm,
        LeakyRelu,
        LogSigmoid,
        LogSoftmax,
        MaxPool,
        MaxUnpool,
        PRelu,
        Relu,
        Relu6,
        Resize,
        RMSNorm,
        Selu,
        Sigmoid,
        Silu,
        Softmax,
        Softplus,
        Softsign,
        SpatialDropout,
        Tanh,
        Upsample,
    )
    from funcnn.shapes import count_params, num_neurons, summary
    from funcnn.taps import features
