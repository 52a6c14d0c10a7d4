"""Ready models: each takes 28x28x1 images to 10 logits, with every layer named in its summary."""

import jax
import pytest

import funcnn as fn


@pytest.mark.parametrize("name", sorted(fn.models.MODELS))
def test_models_take_28x28_images_to_10_logits(name):
    shape, params, state = fn.models.MODELS[name]().init(jax.random.key(0), fn.models.INPUT_SHAPE)
    assert shape == (-1, 10)
    y, _ = jax.jit(fn.models.MODELS[name]().apply)(params, state, jax.numpy.zeros((2, 28, 28, 1)))
    assert y.shape == (2, 10)


@pytest.mark.parametrize("name", sorted(fn.models.MODELS))
def test_model_summaries_count_what_init_builds(name):
    model = fn.models.MODELS[name]()
    _, params, _ = model.init(jax.random.key(0), fn.models.INPUT_SHAPE)
    assert f"trainable params: {fn.count_params(params):,}" in fn.summary(model, fn.models.INPUT_SHAPE)


def conv(k, c_in, c_out, bias=True):
    return k * k * c_in * c_out + (c_out if bias else 0)


def dense(n_in, n_out):
    return n_in * n_out + n_out


def resnet20_params(c_in):
    """By hand: stem conv-BN, 9 basic blocks (two 3x3 conv-BN each), two 1x1 conv-BN projections, dense."""
    bn = lambda c: 2 * c  # noqa: E731  (scale and bias)
    stem = conv(3, c_in, 16, bias=False) + bn(16)
    blocks = 0
    for c_prev, c in [(16, 16), (16, 32), (32, 64)]:
        blocks += conv(3, c_prev, c, False) + bn(c) + conv(3, c, c, False) + bn(c)  # first block
        blocks += 2 * 2 * (conv(3, c, c, False) + bn(c))  # two more blocks
        if c_prev != c:
            blocks += conv(1, c_prev, c, False) + bn(c)  # projection shortcut
    return stem + blocks + dense(64, 10)


@pytest.mark.parametrize(
    "name, input_shape, expected",
    [
        ("seed_cnn", (-1, 28, 28, 1), conv(3, 1, 32) + dense(13 * 13 * 32, 128) + dense(128, 10)),
        (
            "lenet5",
            (-1, 28, 28, 1),
            conv(5, 1, 6) + conv(5, 6, 16) + dense(400, 120) + dense(120, 84) + dense(84, 10),
        ),
        (
            "fashion_mnist_cnn",
            (-1, 28, 28, 1),
            conv(3, 1, 32) + conv(3, 32, 64) + dense(3136, 128) + dense(128, 10),
        ),
        ("resnet20", (-1, 32, 32, 3), resnet20_params(3)),
        ("resnet20", (-1, 28, 28, 1), resnet20_params(1)),
    ],
)
def test_parameter_counts_by_hand(name, input_shape, expected):
    model = fn.models.MODELS[name]()
    out_shape, params, _ = model.init(jax.random.key(0), input_shape)
    assert out_shape == (-1, 10)
    assert fn.count_params(params) == expected
    assert f"trainable params: {expected:,}" in fn.summary(model, input_shape)


def test_published_sizes():
    """LeNet-5: 61,706 parameters; ResNet-20 for CIFAR-10: 0.27 M (He et al., 2016, table 6)."""
    assert resnet20_params(3) == 272_474 and round(resnet20_params(3) / 1e6, 2) == 0.27
    _, params, state = fn.models.resnet20().init(jax.random.key(0), (-1, 32, 32, 3))
    assert fn.count_params(params) == 272_474
    assert fn.count_params(state) == 2 * (16 + 6 * 16 + 6 * 32 + 6 * 64 + 32 + 64)  # BN mean and variance
    assert fn.count_params(fn.models.lenet5().init(jax.random.key(0), (-1, 28, 28, 1))[1]) == 61_706


def test_resnet20_trains_with_batch_statistics_and_infers_with_running_ones():
    model = fn.models.resnet20()
    _, params, state = model.init(jax.random.key(0), (-1, 32, 32, 3))
    x = jax.random.normal(jax.random.key(1), (4, 32, 32, 3))
    y_train, new_state = jax.jit(lambda p, s, x: model.apply(p, s, x, train=True))(params, state, x)
    y_eval, same_state = jax.jit(model.apply)(params, new_state, x)
    assert y_train.shape == y_eval.shape == (4, 10)
    assert jax.tree.all(jax.tree.map(lambda a, b: (a == b).all(), same_state, new_state))
    assert not jax.tree.all(jax.tree.map(lambda a, b: (a == b).all(), state, new_state))
