"""Ready models for 28x28x1 inputs (Fashion-MNIST), returning logits for 10 classes.

Each takes ``dtype``, the compute dtype of every layer (e.g. ``jnp.bfloat16``
for mixed precision; parameters stay float32), and ``grad``, the rule every
layer differentiates with.
"""

from __future__ import annotations

from collections.abc import Callable

from jax.typing import DTypeLike

from funcnn.combinators import residual, serial
from funcnn.core import Layer
from funcnn.layers import Conv, Dense, Flatten, GlobalAvgPool, MaxPool, Relu

INPUT_SHAPE = (-1, 28, 28, 1)
"""The input shape every model here expects: a batch of 28x28 greyscale images."""


def seed_cnn(num_classes: int = 10, *, dtype: DTypeLike | None = None, grad: str = "custom") -> Layer:
    """The course's CNN: conv -> activation -> pool -> flatten -> dense -> output.

    Conv 32 3x3 VALID (28 -> 26), ReLU, max-pool 2 (26 -> 13), flatten
    (13 * 13 * 32 = 5408 neurons), dense 128, ReLU, dense ``num_classes``.
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


def fashion_mnist_cnn(
    num_classes: int = 10, *, dtype: DTypeLike | None = None, grad: str = "custom"
) -> Layer:
    """Two conv blocks and a dense head, the benchmark and default training model.

    Conv 32 3x3 SAME, ReLU, max-pool 2 (28 -> 14), conv 64 3x3 SAME, ReLU,
    max-pool 2 (14 -> 7), flatten (3136), dense 128, ReLU, dense ``num_classes``.
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


def small_resnet(num_classes: int = 10, *, dtype: DTypeLike | None = None, grad: str = "custom") -> Layer:
    """A small ResNet: stem conv 16, two residual stages (16, 32) split by max-pool, global average pool."""
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


MODELS: dict[str, Callable[..., Layer]] = {
    "seed_cnn": seed_cnn,
    "fashion_mnist_cnn": fashion_mnist_cnn,
    "small_resnet": small_resnet,
}
"""Model constructors by name, as the command line takes them."""
