"""Forward mode on every layer and ready model: ``jax.jvp``, ``jax.jacfwd``, ``jax.hessian`` and
``jax.linearize`` with ``grad="custom"`` (the hand-written rules) equal JAX's autodiff (the same
layer built inside ``fn.grad_mode("autodiff")``) to 1e-12 in float64, in the parameters and the
input, in training mode (BatchNorm's batch statistics, Dropout's mask under a fixed key)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcnn as fn


@pytest.fixture(scope="module", autouse=True)
def double(x64):
    """float64: forward mode is compared with autodiff to 1e-12."""


def _unpool():
    return fn.serial(fn.MaxPool(2, return_indices=True), fn.MaxUnpool(2))


# name: (layer factory, input shape without the batch)
LAYERS = {
    "Conv": (lambda: fn.Conv(3, 3, strides=2, padding="SAME"), (5, 5, 2)),
    "Conv reflect": (lambda: fn.Conv(2, 3, padding="SAME", padding_mode="reflect", groups=2), (4, 4, 2)),
    "ConvTranspose": (lambda: fn.ConvTranspose(2, 3, strides=2), (3, 3, 2)),
    "FixedConv": (lambda: fn.FixedConv(fn.filters.sobel(0), padding="SAME"), (5, 5, 1)),
    "Dense": (lambda: fn.serial(fn.Flatten(), fn.Dense(3)), (2, 3, 2)),
    "MaxPool": (lambda: fn.MaxPool(2), (4, 4, 2)),
    "MaxPool 3-D": (lambda: fn.MaxPool(2, 1), (3, 3, 3, 2)),
    "AvgPool": (lambda: fn.AvgPool(3, 2, "SAME"), (5, 5, 2)),
    "GlobalMaxPool": (lambda: fn.GlobalMaxPool(), (3, 4, 2)),
    "GlobalAvgPool": (lambda: fn.GlobalAvgPool(), (3, 4, 2)),
    "AdaptiveAvgPool": (lambda: fn.AdaptiveAvgPool(2), (5, 3, 2)),
    "AdaptiveMaxPool": (lambda: fn.AdaptiveMaxPool((2, 3)), (5, 4, 2)),
    "MaxUnpool": (_unpool, (4, 4, 2)),
    "Upsample": (lambda: fn.Upsample(2, "bilinear"), (3, 3, 2)),
    "Resize": (lambda: fn.Resize((4, 5), "bicubic"), (3, 3, 2)),
    "BatchNorm": (lambda: fn.BatchNorm(), (3, 3, 2)),
    "LayerNorm": (lambda: fn.LayerNorm(), (3, 4)),
    "RMSNorm": (lambda: fn.RMSNorm(), (3, 4)),
    "GroupNorm": (lambda: fn.GroupNorm(2), (3, 3, 4)),
    "InstanceNorm": (lambda: fn.InstanceNorm(), (3, 3, 2)),
    "Dropout": (lambda: fn.Dropout(0.5), (3, 4)),
    "SpatialDropout": (lambda: fn.SpatialDropout(0.5), (3, 3, 4)),
    "PRelu": (lambda: fn.PRelu(), (3, 4)),
    **{name: (getattr(fn, name), (3, 4)) for name in (
        "Relu", "Relu6", "LeakyRelu", "Elu", "Selu", "Celu", "Gelu", "Silu", "HardSilu", "Sigmoid",
        "HardSigmoid", "LogSigmoid", "Tanh", "Softplus", "Softsign", "Softmax", "LogSoftmax",
    )},
}  # fmt: skip

MODELS = {
    name: (getattr(fn.models, name), (28, 28, 1))
    for name in ("seed_cnn", "lenet5", "fashion_mnist_cnn", "small_resnet", "resnet20")
}


def _pair(factory, shape, batch=2):
    """The layer with the hand-written rules and with autodiff, its parameters, state and input."""
    custom = factory()
    with fn.grad_mode("autodiff"):
        autodiff = factory()
    _, params, state = custom.init(jax.random.key(0), (-1, *shape))
    params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
    x = jnp.asarray(np.random.default_rng(1).normal(size=(batch, *shape)) * 2.0)

    def forward(layer):
        return lambda p, x: layer.apply(p, state, x, key=jax.random.key(3), train=True)[0]

    return forward(custom), forward(autodiff), params, x


def _close(actual, expected):
    """Equal to 1e-12 of the larger of 1 and the largest entry (sums of thousands of terms, such as a
    model's Hessian, round in an order XLA:CPU's threads choose)."""
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
        scale = max(1.0, float(np.max(np.abs(e), initial=0.0)))
        np.testing.assert_allclose(np.asarray(a), np.asarray(e), rtol=1e-12, atol=1e-12 * scale)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_every_layer_jvp_and_linearize_equal_autodiff(name):
    custom, autodiff, params, x = _pair(*LAYERS[name])
    tangents = jax.tree.map(lambda a: jnp.cos(a + 1.0), (params, x))
    _close(jax.jvp(custom, (params, x), tangents), jax.jvp(autodiff, (params, x), tangents))
    y, linear = jax.linearize(custom, params, x)
    _close((y, linear(*tangents)), jax.jvp(autodiff, (params, x), tangents))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_every_layer_jacfwd_and_hessian_equal_autodiff(name):
    custom, autodiff, params, x = _pair(*LAYERS[name])
    _close(jax.jacfwd(custom, (0, 1))(params, x), jax.jacfwd(autodiff, (0, 1))(params, x))

    def scalar(f):
        return lambda p, x: jnp.sum(jnp.sin(f(p, x)))

    _close(jax.hessian(scalar(custom), (0, 1))(params, x), jax.hessian(scalar(autodiff), (0, 1))(params, x))


@pytest.mark.parametrize(
    "name",
    [pytest.param(name, marks=pytest.mark.slow) if name == "resnet20" else name for name in sorted(MODELS)],
)
def test_ready_models_jvp_and_linearize_equal_autodiff(name):
    factory, shape = MODELS[name]
    custom, autodiff, params, x = _pair(factory, shape)
    tangents = jax.tree.map(lambda a: jnp.cos(a + 1.0), (params, x))
    _close(jax.jvp(custom, (params, x), tangents), jax.jvp(autodiff, (params, x), tangents))
    y, linear = jax.linearize(custom, params, x)
    _close((y, jax.jit(linear)(*tangents)), jax.jvp(autodiff, (params, x), tangents))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MODELS))
def test_ready_models_jacfwd_and_hessian_vector_products_equal_autodiff(name):
    factory, shape = MODELS[name]
    custom, autodiff, params, x = _pair(factory, shape, batch=1)
    _close(jax.jacfwd(custom, 1)(params, x), jax.jacfwd(autodiff, 1)(params, x))

    def loss(f):
        return lambda p, x: jnp.sum(jnp.sin(f(p, x)))

    direction = jax.tree.map(jnp.cos, (params, x))
    hvp = jax.jvp(jax.grad(loss(custom), (0, 1)), (params, x), direction)[1]
    _close(hvp, jax.jvp(jax.grad(loss(autodiff), (0, 1)), (params, x), direction)[1])
    if name == "seed_cnn":  # the whole Hessian in the input
        _close(jax.hessian(loss(custom), 1)(params, x), jax.hessian(loss(autodiff), 1)(params, x))
