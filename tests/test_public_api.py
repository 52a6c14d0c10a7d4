"""Pin the public names of ``funcnn`` (optax style): a change here is a contract change."""

import funcnn
import funcnn.ops

PUBLIC = {
    "AdaptiveAvgPool", "AdaptiveMaxPool", "ApplyFn", "AvgPool", "BatchNorm", "BatchNormState", "Celu",
    "Conv", "ConvTranspose", "Dense", "Dropout", "Elu", "FixedConv", "Flatten", "Gelu", "GlobalAvgPool",
    "GlobalMaxPool", "GroupNorm", "HardSigmoid", "HardSilu", "InitFn", "InstanceNorm", "Layer",
    "LayerConfigError", "LayerNorm", "LeakyRelu", "LogSigmoid", "LogSoftmax", "MaxPool", "MaxUnpool",
    "PRelu", "RMSNorm", "Relu", "Relu6", "Resize", "Selu", "Shape", "Sigmoid", "Silu", "Softmax",
    "Softplus", "Softsign", "SpatialDropout", "Tanh", "Upsample", "count_params", "fan_in_concat",
    "fan_in_sum", "fan_out", "features", "filters", "grad_mode", "labels", "models", "num_neurons", "ops",
    "parallel", "residual", "serial", "shapes", "summary",
}  # fmt: skip

OPS = {
    "adaptive_avg_pool", "adaptive_max_pool", "avg_pool", "celu", "conv", "conv_transpose", "dense", "elu",
    "gelu", "hard_sigmoid", "hard_silu", "leaky_relu", "log_sigmoid", "log_softmax", "max_pool",
    "max_unpool", "prelu", "relu", "relu6", "resize", "selu", "sigmoid", "silu", "softmax", "softplus",
    "softsign", "standardize", "tanh", "upsample",
}  # fmt: skip


def test_public_names_are_pinned():
    assert set(funcnn.__all__) == PUBLIC
    assert all(hasattr(funcnn, name) for name in PUBLIC)


def test_ops_names_are_pinned():
    assert set(funcnn.ops.__all__) == OPS


def test_every_layer_constructor_is_called_even_without_arguments():
    for name in ("Relu", "Flatten", "GlobalMaxPool", "BatchNorm", "Softmax"):
        assert isinstance(getattr(funcnn, name)(), funcnn.Layer)


def test_every_public_name_has_a_lazy_source():
    lazy = set(funcnn._MODULE_OF) | set(funcnn._SUBMODULES)
    assert lazy == PUBLIC


def test_import_funcnn_and_the_command_line_parser_do_not_load_jax():
    import subprocess
    import sys

    code = "import sys, funcnn, funcnn.cli; funcnn.cli.build_parser(); print('jax' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
