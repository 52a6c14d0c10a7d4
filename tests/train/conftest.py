"""Fixtures: a tiny model and a tiny learnable data set, so training tests run in seconds."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from funcnn.core import Layer


def tiny_classifier(classes: int = 3, nan_from_step: int | None = None) -> Layer:
    """A dense softmax classifier on flattened images, with a step counter as its state.

    In training it requires a key and adds a little key-driven noise (so tests
    see whether keys agree), and from training step ``nan_from_step`` on it
    returns NaN logits.
    """

    def init(key, input_shape):
        n = math.prod(input_shape[1:])
        params = {"w": jax.random.normal(key, (n, classes)) / math.sqrt(n), "b": jnp.zeros(classes)}
        return (input_shape[0], classes), params, jnp.zeros((), jnp.int32)

    def apply(params, count, x, *, key=None, train=False):
        logits = x.reshape(x.shape[0], -1) @ params["w"] + params["b"][None, :]
        if not train:
            return logits, count
        if key is None:
            raise ValueError("tiny_classifier needs a key in training")
        logits = logits + 0.01 * jax.random.normal(key, logits.shape, logits.dtype)
        if nan_from_step is not None:
            logits = jnp.where(count >= nan_from_step, jnp.nan, logits)
        return logits, count + 1

    return Layer(init, apply)


def tiny_data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``uint8`` 6x6 images whose label (0-2) is the brightest third of the image."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n).astype(np.uint8)
    images = rng.integers(0, 100, (n, 6, 6)).astype(np.uint8)
    for i, label in enumerate(labels):
        images[i, 2 * label : 2 * label + 2] += 120
    return images, labels


# Session scope: one model object, so ``fit`` and ``evaluate`` reuse their compiled programs across tests.
@pytest.fixture(scope="session")
def model():
    return tiny_classifier()


@pytest.fixture(scope="session")
def make_model():
    """The model factory, for tests that need a variant (``nan_from_step``)."""
    return tiny_classifier


@pytest.fixture(scope="session")
def train_data():
    return tiny_data(96)


@pytest.fixture(scope="session")
def test_data():
    return tiny_data(50, seed=1)
