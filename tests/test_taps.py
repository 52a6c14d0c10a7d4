"""Intermediate activations by layer path: the outputs apply computes, under jit and grad too."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcnn as fn


@pytest.fixture(scope="module")
def resnet():
    model = fn.models.resnet20()
    _, params, state = model.init(jax.random.key(0), (-1, 28, 28, 1))
    x = jax.random.uniform(jax.random.key(1), (2, 28, 28, 1))
    return model, params, state, x


def test_every_layer_s_output_is_the_one_apply_computes():
    model = fn.serial(fn.Conv(4, 3), fn.Relu(), fn.MaxPool(2), fn.Flatten(), fn.Dense(3))
    _, params, state = model.init(jax.random.key(0), (-1, 8, 8, 1))
    x = jax.random.normal(jax.random.key(1), (2, 8, 8, 1))
    found = fn.features(model, params, state, x)
    assert list(found) == [
        "serial", "serial/0:Conv", "serial/1:Relu", "serial/2:MaxPool", "serial/3:Flatten", "serial/4:Dense",
    ]  # fmt: skip
    y = x
    for (path, got), layer, p, s in zip(list(found.items())[1:], fn.identity.layer_children(model), params, state):
        y = layer.apply(p, s, y)[0]
        np.testing.assert_array_equal(got, y, err_msg=path)
    np.testing.assert_array_equal(found["serial"], model.apply(params, state, x)[0])


def test_paths_are_the_parameter_labels_prefixes(resnet):
    model, params, state, x = resnet
    found = fn.features(model, params, state, x, names="*Conv")
    conv_labels = {label.rsplit("/", 1)[0] for label in jax.tree.leaves(fn.labels.tree_labels(model, params))
                   if label.endswith("Conv/kernel")}  # fmt: skip
    assert set(found) == conv_labels and len(found) == 21  # 19 convolutions and 2 projection shortcuts


def test_features_work_under_jit_and_grad(resnet):
    model, params, state, x = resnet
    first = "serial/0:serial/0:Conv"
    eager = fn.features(model, params, state, x, names=first)[first]
    jitted = jax.jit(lambda p, s, x: fn.features(model, p, s, x, names=first))(params, state, x)[first]
    np.testing.assert_allclose(jitted, eager, rtol=1e-6, atol=1e-6)
    grad = jax.grad(lambda x: jnp.sum(fn.features(model, params, state, x, names=first)[first]))(x)
    assert grad.shape == x.shape and bool(jnp.any(grad != 0))


def test_training_mode_is_passed_on(resnet):
    model, params, state, x = resnet
    bn = "serial/0:serial/1:BatchNorm"
    out = fn.features(model, params, state, x, names=bn, train=True)[bn]
    np.testing.assert_allclose(out.mean(axis=(0, 1, 2)), 0, atol=1e-5)  # batch statistics
    assert not np.allclose(fn.features(model, params, state, x, names=bn)[bn].mean(axis=(0, 1, 2)), 0, atol=1e-5)


@pytest.mark.parametrize(
    ("names", "match"),
    [
        ("*Dense/kernel", r"features: argument `names` pattern '\*Dense/kernel' matches none of the 6 layer paths "
                          r"\(serial, serial/0:Conv, "),
        ((3,), r"pattern 3 matches none"),
    ],
)  # fmt: skip
def test_a_pattern_that_matches_no_layer_is_named(names, match):
    model = fn.serial(fn.Conv(4, 3), fn.Relu(), fn.MaxPool(2), fn.Flatten(), fn.Dense(3))
    _, params, state = model.init(jax.random.key(0), (-1, 8, 8, 1))
    with pytest.raises(fn.LayerConfigError, match=match):
        fn.features(model, params, state, jnp.ones((1, 8, 8, 1)), names=names)


@pytest.mark.parametrize("names", [None, (), 3])
def test_names_that_are_no_patterns_are_named(names):
    model = fn.serial(fn.Dense(2))
    _, params, state = model.init(jax.random.key(0), (-1, 3))
    with pytest.raises(fn.LayerConfigError, match=r"features: argument `names` must be a pattern or a non-empty"):
        fn.features(model, params, state, jnp.ones((1, 3)), names=names)
