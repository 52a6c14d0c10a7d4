"""Pin the public names of ``funcnn`` (optax style): a change here is a contract change."""

import funcnn
import funcnn.ops

PUBLIC = {
    "ApplyFn", "AvgPool", "BatchNorm", "BatchNormState", "Conv", "ConvTranspose", "Dense", "Dropout", "Elu",
    "FixedConv", "Flatten", "Gelu", "GlobalAvgPool", "GlobalMaxPool", "GroupNorm", "InitFn", "Layer",
    "LayerConfigError", "LayerNorm", "LeakyRelu", "LogSoftmax", "MaxPool", "Relu", "Shape", "Sigmoid",
    "Softmax", "Tanh", "count_params", "fan_in_concat", "fan_in_sum", "fan_out", "filters", "models",
    "num_neurons", "ops", "parallel", "residual", "serial", "shapes", "summary",
}  # fmt: skip

OPS = {
    "avg_pool", "conv", "conv_transpose", "dense", "elu", "gelu", "leaky_relu", "log_softmax", "max_pool",
    "relu", "sigmoid", "softmax", "tanh",
}  # fmt: skip


def test_public_names_are_pinned():
    assert set(funcnn.__all__) == PUBLIC
    assert all(hasattr(funcnn, name) for name in PUBLIC)


def test_ops_names_are_pinned():
    assert set(funcnn.ops.__all__) == OPS


def test_every_layer_constructor_is_called_even_without_arguments():
    for name in ("Relu", "Flatten", "GlobalMaxPool", "BatchNorm", "Softmax"):
        assert isinstance(getattr(funcnn, name)(), funcnn.Layer)
