"""Ready models, returning logits for ``num_classes`` classes (10 by default).

``seed_cnn``, ``lenet5`` and ``fashion_mnist_cnn`` take 28x28x1 inputs
(Fashion-MNIST, [`INPUT_SHAPE`][funcnn.models.INPUT_SHAPE]); ``resnet20`` and ``small_resnet`` end in
a global average pool, so they take any image size and channel count (28x28x1
or CIFAR's 32x32x3). Each takes ``dtype``, the compute dtype of every layer
(e.g. ``jnp.bfloat16`` for mixed precision; parameters stay float32), and
``grad``, the rule every layer with a hand-written VJP differentiates with.
"""

from __future__ import annotations

from collections.abc import Callable

from jax.typing import DTypeLike

from funcnn.combinators import fan_in_sum, fan_out, parallel, residual, serial
from funcnn.core import Layer
from funcnn.layers import AvgPool, BatchNorm, Conv, Dense, Flatten, GlobalAvgPool, MaxPool, Relu, Tanh

INPUT_SHAPE = (-1, 28, 28, 1)
"""The input shape every model here expects: a batch of 28x28 greyscale images."""


def seed_cnn(num_classes: int = 10, *, dtype: DTypeLike | None = None, grad: str | None = None) -> Layer:
    """The course's CNN: conv -> activation -> pool -> flatten -> dense -> output.

    Conv 32 3x3 VALID (28 -> 26), ReLU, max-pool 2 (26 -> 13), flatten
    (13 * 13 * 32 = 5408 neurons), dense 128, ReLU, dense ``num_classes``.

    Args:
      num_classes: the number of classes, the width of the output logits; a positive int.
      dtype: the compute dtype of every layer, a floating dtype such as ``jnp.bfloat16``
        (parameters stay float32); ``None``: each layer computes in its input's floating dtype
        (float32 for an integer input).
      grad: the gradient rule of every layer that takes one, ``"custom"``, ``"custom_vjp"`` or
        ``"autodiff"``; ``None``: the mode in force when the model is built
        ([`funcnn.grad_mode`][funcnn.core.grad_mode], ``"custom"`` outside it).

    Shapes:
      Input ``(N, H, W, C)``, channels last: ``(N, 28, 28, 1)`` as designed
      ([`INPUT_SHAPE`][funcnn.models.INPUT_SHAPE]); any ``H, W >= 4`` and ``C`` build too, the first
      dense layer then taking ``floor((H - 2) / 2) floor((W - 2) / 2) 32`` inputs.
      Output ``(N, num_classes)``, the logits (in the compute dtype).

    Returns:
      The model, an ``(init, apply)`` pair (a ``serial`` of its layers); it has no state.

    Raises:
      LayerConfigError: at construction, when ``num_classes`` is not a positive int, ``dtype`` is
        not a floating dtype or ``grad`` is not one of the modes above.
    """
    return serial(
        Conv(32, (3, 3), dtype=dtype, grad=grad),
        Relu(dtype=dtype, grad=grad),
        MaxPool(2, dtype=dtype, grad=grad),
        Flatten(),
        Dense(128, dtype=dtype, grad=grad),
        Relu(dtype=dtype, grad=grad),
        Dense(num_classes, dtype=dtype, grad=grad),
    )


def lenet5(num_classes: int = 10, *, dtype: DTypeLike | None = None, grad: str | None = None) -> Layer:
    """LeNet-5 (LeCun et al., 1998) for 28x28x1 inputs: tanh units and average pooling.

    Conv 6 5x5 SAME (28 -> 28, as the original's 32x32 input padded),
    tanh, avg-pool 2 (-> 14), conv 16 5x5 VALID (-> 10), tanh, avg-pool 2
    (-> 5), flatten (5 * 5 * 16 = 400), dense 120, tanh, dense 84, tanh,
    dense ``num_classes``: 61,706 parameters for 10 classes.

    Args:
      num_classes: the number of classes, the width of the output logits; a positive int.
      dtype: the compute dtype of every layer, a floating dtype such as ``jnp.bfloat16``
        (parameters stay float32); ``None``: each layer computes in its input's floating dtype
        (float32 for an integer input).
      grad: the gradient rule of every layer that takes one, ``"custom"``, ``"custom_vjp"`` or
        ``"autodiff"``; ``None``: the mode in force when the model is built
        ([`funcnn.grad_mode`][funcnn.core.grad_mode], ``"custom"`` outside it).

    Shapes:
      Input ``(N, H, W, C)``, channels last: ``(N, 28, 28, 1)`` as designed
      ([`INPUT_SHAPE`][funcnn.models.INPUT_SHAPE]); any ``H, W >= 12`` and ``C`` build too, the first dense
      layer then taking ``floor((floor(H / 2) - 4) / 2) floor((floor(W / 2) - 4) / 2) 16`` inputs. Output
      ``(N, num_classes)``, the logits (in the compute dtype).

    Returns:
      The model, an ``(init, apply)`` pair (a ``serial`` of its layers); it has no state.

    Raises:
      LayerConfigError: at construction, when ``num_classes`` is not a positive int, ``dtype`` is
        not a floating dtype or ``grad`` is not one of the modes above.
    """
    return serial(
        Conv(6, (5, 5), padding="SAME", dtype=dtype, grad=grad),
        Tanh(dtype=dtype, grad=grad),
        AvgPool(2, dtype=dtype, grad=grad),
        Conv(16, (5, 5), dtype=dtype, grad=grad),
        Tanh(dtype=dtype, grad=grad),
        AvgPool(2, dtype=dtype, grad=grad),
        Flatten(),
        Dense(120, dtype=dtype, grad=grad),
        Tanh(dtype=dtype, grad=grad),
        Dense(84, dtype=dtype, grad=grad),
        Tanh(dtype=dtype, grad=grad),
        Dense(num_classes, dtype=dtype, grad=grad),
    )


def fashion_mnist_cnn(
    num_classes: int = 10, *, dtype: DTypeLike | None = None, grad: str | None = None
) -> Layer:
    """Two conv blocks and a dense head, the benchmark and default training model.

    Conv 32 3x3 SAME, ReLU, max-pool 2 (28 -> 14), conv 64 3x3 SAME, ReLU,
    max-pool 2 (14 -> 7), flatten (3136), dense 128, ReLU, dense ``num_classes``.

    Args:
      num_classes: the number of classes, the width of the output logits; a positive int.
      dtype: the compute dtype of every layer, a floating dtype such as ``jnp.bfloat16``
        (parameters stay float32); ``None``: each layer computes in its input's floating dtype
        (float32 for an integer input).
      grad: the gradient rule of every layer that takes one, ``"custom"``, ``"custom_vjp"`` or
        ``"autodiff"``; ``None``: the mode in force when the model is built
        ([`funcnn.grad_mode`][funcnn.core.grad_mode], ``"custom"`` outside it).

    Shapes:
      Input ``(N, H, W, C)``, channels last: ``(N, 28, 28, 1)`` as designed
      ([`INPUT_SHAPE`][funcnn.models.INPUT_SHAPE]); any ``H, W >= 4`` and ``C`` build too, the first
      dense layer then taking ``floor(H / 4) floor(W / 4) 64`` inputs.
      Output ``(N, num_classes)``, the logits (in the compute dtype).

    Returns:
      The model, an ``(init, apply)`` pair (a ``serial`` of its layers); it has no state.

    Raises:
      LayerConfigError: at construction, when ``num_classes`` is not a positive int, ``dtype`` is
        not a floating dtype or ``grad`` is not one of the modes above.
    """
    return serial(
        Conv(32, (3, 3), padding="SAME", dtype=dtype, grad=grad),
        Relu(dtype=dtype, grad=grad),
        MaxPool(2, dtype=dtype, grad=grad),
        Conv(64, (3, 3), padding="SAME", dtype=dtype, grad=grad),
        Relu(dtype=dtype, grad=grad),
        MaxPool(2, dtype=dtype, grad=grad),
        Flatten(),
        Dense(128, dtype=dtype, grad=grad),
        Relu(dtype=dtype, grad=grad),
        Dense(num_classes, dtype=dtype, grad=grad),
    )


def _residual_block(features: int, dtype: DTypeLike | None, grad: str) -> Layer:
    """``x + conv(relu(conv(x)))`` followed by ReLU, shape-preserving."""
    return serial(
        residual(
            Conv(features, (3, 3), padding="SAME", dtype=dtype, grad=grad),
            Relu(dtype=dtype, grad=grad),
            Conv(features, (3, 3), padding="SAME", dtype=dtype, grad=grad),
        ),
        Relu(dtype=dtype, grad=grad),
    )


def small_resnet(num_classes: int = 10, *, dtype: DTypeLike | None = None, grad: str | None = None) -> Layer:
    """A small ResNet: stem conv 16, two residual stages (16, 32) split by max-pool, global average pool.

    Each stage is a 3x3 conv and ReLU, then one residual block ``relu(x + conv(relu(conv(x))))``
    (3x3 SAME convs); the max-pool 2 halves the spatial size; a dense layer gives the logits.

    Args:
      num_classes: the number of classes, the width of the output logits; a positive int.
      dtype: the compute dtype of every layer, a floating dtype such as ``jnp.bfloat16``
        (parameters stay float32); ``None``: each layer computes in its input's floating dtype
        (float32 for an integer input).
      grad: the gradient rule of every layer that takes one, ``"custom"``, ``"custom_vjp"`` or
        ``"autodiff"``; ``None``: the mode in force when the model is built
        ([`funcnn.grad_mode`][funcnn.core.grad_mode], ``"custom"`` outside it).

    Shapes:
      Input ``(N, H, W, C)``, channels last, any ``H, W >= 2`` (28x28x1 Fashion-MNIST, 32x32x3
      CIFAR); the parameters depend only on ``C``.
      Output ``(N, num_classes)``, the logits (in the compute dtype).

    Returns:
      The model, an ``(init, apply)`` pair (a ``serial`` of its layers); it has no state.

    Raises:
      LayerConfigError: at construction, when ``num_classes`` is not a positive int, ``dtype`` is
        not a floating dtype or ``grad`` is not one of the modes above.
    """
    return serial(
        Conv(16, (3, 3), padding="SAME", dtype=dtype, grad=grad),
        Relu(dtype=dtype, grad=grad),
        _residual_block(16, dtype, grad),
        MaxPool(2, dtype=dtype, grad=grad),
        Conv(32, (3, 3), padding="SAME", dtype=dtype, grad=grad),
        Relu(dtype=dtype, grad=grad),
        _residual_block(32, dtype, grad),
        GlobalAvgPool(dtype=dtype, grad=grad),
        Dense(num_classes, dtype=dtype, grad=grad),
    )


def _conv_bn(features: int, kernel: int, strides: int, dtype: DTypeLike | None, grad: str) -> Layer:
    """Conv without bias (the BatchNorm after it has one), then BatchNorm."""
    conv = Conv(features, (kernel, kernel), strides, "SAME", use_bias=False, dtype=dtype, grad=grad)
    return serial(conv, BatchNorm(dtype=dtype))


def _basic_block(features: int, strides: int, project: bool, dtype: DTypeLike | None, grad: str) -> Layer:
    """ResNet's basic block: ``relu(F(x) + shortcut(x))`` with ``F`` = conv-BN-ReLU-conv-BN (3x3).

    The shortcut is the identity, or where the block changes the shape
    (stride 2, more features) a 1x1 conv with that stride and BatchNorm
    (He et al.'s option B).
    """
    body = serial(
        _conv_bn(features, 3, strides, dtype, grad),
        Relu(dtype=dtype, grad=grad),
        _conv_bn(features, 3, 1, dtype, grad),
    )
    if not project:
        return serial(residual(body), Relu(dtype=dtype, grad=grad))
    shortcut = _conv_bn(features, 1, strides, dtype, grad)
    return serial(fan_out(2), parallel(body, shortcut), fan_in_sum(), Relu(dtype=dtype, grad=grad))


def resnet20(num_classes: int = 10, *, dtype: DTypeLike | None = None, grad: str | None = None) -> Layer:
    """ResNet-20 (He et al., 2016, the CIFAR-10 network): 6n + 2 layers with n = 3.

    Conv 16 3x3 + BatchNorm + ReLU, three stages of three basic blocks with
    16, 32 and 64 features (the second and third start with stride 2: 32 ->
    16 -> 8 on CIFAR, 28 -> 14 -> 7 on Fashion-MNIST), global average pool,
    dense ``num_classes``. 272,474 trainable parameters on 32x32x3 inputs
    (0.27 M, as in the paper) and 272,186 on 28x28x1; the BatchNorm running
    statistics are the state.

    Args:
      num_classes: the number of classes, the width of the output logits; a positive int.
      dtype: the compute dtype of every layer, a floating dtype such as ``jnp.bfloat16``
        (parameters stay float32); ``None``: each layer computes in its input's floating dtype
        (float32 for an integer input).
      grad: the gradient rule of every layer that takes one, ``"custom"``, ``"custom_vjp"`` or
        ``"autodiff"``; ``None``: the mode in force when the model is built
        ([`funcnn.grad_mode`][funcnn.core.grad_mode], ``"custom"`` outside it).

    Shapes:
      Input ``(N, H, W, C)``, channels last, any ``H, W >= 1`` (28x28x1 Fashion-MNIST, 32x32x3
      CIFAR); the parameters depend only on ``C``.
      Output ``(N, num_classes)``, the logits (in the compute dtype).

    Returns:
      The model, an ``(init, apply)`` pair (a ``serial`` of its layers); its state is the BatchNorm running
      statistics, which ``apply`` updates with ``train=True``.

    Raises:
      LayerConfigError: at construction, when ``num_classes`` is not a positive int, ``dtype`` is
        not a floating dtype or ``grad`` is not one of the modes above.
    """
    layers = [_conv_bn(16, 3, 1, dtype, grad), Relu(dtype=dtype, grad=grad)]
    for stage, features in enumerate((16, 32, 64)):
        for block in range(3):
            downsample = stage > 0 and block == 0
            layers.append(_basic_block(features, 2 if downsample else 1, downsample, dtype, grad))
    layers += [GlobalAvgPool(dtype=dtype, grad=grad), Dense(num_classes, dtype=dtype, grad=grad)]
    return serial(*layers)


MODELS: dict[str, Callable[..., Layer]] = {
    "seed_cnn": seed_cnn,
    "lenet5": lenet5,
    "fashion_mnist_cnn": fashion_mnist_cnn,
    "small_resnet": small_resnet,
    "resnet20": resnet20,
}
"""Model constructors by name, as the command line takes them."""
