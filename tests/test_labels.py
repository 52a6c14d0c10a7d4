"""Labels of a model's leaves, patterns over them, and freezing with optax."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import funcnn as fn
from funcnn.core import LayerConfigError

SHAPE = (-1, 28, 28, 1)


def test_the_labels_of_a_ready_model_name_each_layer_by_position_and_kind():
    labels = fn.labels.param_labels(fn.models.fashion_mnist_cnn(), SHAPE)
    assert jax.tree.leaves(labels) == [
        "serial/0:Conv/bias", "serial/0:Conv/kernel", "serial/3:Conv/bias", "serial/3:Conv/kernel",
        "serial/7:Dense/bias", "serial/7:Dense/kernel", "serial/9:Dense/bias", "serial/9:Dense/kernel",
    ]  # fmt: skip


def test_labels_have_the_structure_of_the_tree_they_name():
    model = fn.models.resnet20()
    _, params, state = jax.eval_shape(lambda k: model.init(k, SHAPE), jax.random.key(0))
    for tree in (params, state):
        labels = fn.labels.tree_labels(model, tree)
        assert jax.tree.structure(labels) == jax.tree.structure(tree)
        assert len(set(jax.tree.leaves(labels))) == len(jax.tree.leaves(tree))  # every label is unique
    assert jax.tree.leaves(fn.labels.tree_labels(model, state))[:2] == [
        "serial/0:serial/1:BatchNorm/mean", "serial/0:serial/1:BatchNorm/var"
    ]  # fmt: skip
    assert jax.tree.leaves(fn.labels.param_labels(model, SHAPE)) == jax.tree.leaves(
        fn.labels.tree_labels(model, params)
    )


def test_a_plain_pair_and_a_nested_combinator_are_labelled():
    def init(key, shape):
        return shape, {"w": jnp.ones(shape[-1])}, ()

    def apply(params, state, x, *, key=None, train=False):
        return x * params["w"], state

    model = fn.serial(fn.Dense(3), fn.Layer(init, apply), fn.residual(fn.Dense(3)))
    assert jax.tree.leaves(fn.labels.param_labels(model, (-1, 2))) == [
        "serial/0:Dense/bias", "serial/0:Dense/kernel", "serial/1:Layer/w",
        "serial/2:residual/0:Dense/bias", "serial/2:residual/0:Dense/kernel",
    ]  # fmt: skip


def test_matching_selects_by_kind_and_by_position():
    labels = fn.labels.param_labels(fn.models.fashion_mnist_cnn(), SHAPE)
    biases = fn.labels.matching(labels, "*/bias")
    assert [b for b, name in zip(jax.tree.leaves(biases), jax.tree.leaves(labels))] == [
        name.endswith("/bias") for name in jax.tree.leaves(labels)
    ]
    first_two = jax.tree.leaves(fn.labels.matching(labels, "serial/[0-3]:*"))
    assert first_two == [True] * 4 + [False] * 4
    either = jax.tree.leaves(fn.labels.matching(labels, "serial/0:*", "serial/9:*"))
    assert either == [True, True, False, False, False, False, True, True]


@pytest.mark.parametrize(
    ("patterns", "match"),
    [
        (("*/weight",), r"matching: pattern '\*/weight' matches none of the 8 labels \(serial/0:Conv/bias, "),
        ((), r"matching: arguments `\*patterns` must hold at least one pattern, got none"),
        ((3,), r"matching: argument `patterns` must hold strings, got 3"),
    ],
)
def test_a_pattern_that_selects_nothing_is_an_error(patterns, match):
    labels = fn.labels.param_labels(fn.models.fashion_mnist_cnn(), SHAPE)
    with pytest.raises(LayerConfigError, match=match):
        fn.labels.matching(labels, *patterns)


@pytest.mark.standard_promotion
def test_freeze_leaves_frozen_leaves_bit_for_bit_and_keeps_no_state_for_them():
    model = fn.serial(fn.Conv(4, 3), fn.Relu(), fn.Flatten(), fn.Dense(2))
    params = model.init(jax.random.key(0), (-1, 6, 6, 1))[1]
    labels = fn.labels.tree_labels(model, params)
    optimizer = fn.labels.freeze(optax.adam(0.1), fn.labels.matching(labels, "*Conv/*"))
    opt_state = optimizer.init(params)
    assert len(jax.tree.leaves(opt_state)) == 1 + 2 * 2  # adam's count, mu and nu of the Dense leaves
    grads = jax.tree.map(jnp.ones_like, params)
    updates, _ = optimizer.update(grads, opt_state, params)
    new = optax.apply_updates(params, updates)
    np.testing.assert_array_equal(new[0]["kernel"], params[0]["kernel"])
    assert not np.array_equal(new[3]["kernel"], params[3]["kernel"])


@pytest.mark.standard_promotion
def test_a_weight_decay_mask_leaves_biases_and_batch_norm_alone():
    model = fn.serial(fn.Dense(3), fn.BatchNorm(), fn.Dense(2))
    params = jax.tree.map(jnp.ones_like, model.init(jax.random.key(0), (-1, 2))[1])  # no zero leaf
    decayed = jax.tree.map(
        lambda m: not m, fn.labels.matching(fn.labels.tree_labels(model, params), "*/bias", "*BatchNorm/*")
    )
    optimizer = optax.adamw(1.0, weight_decay=0.5, mask=decayed)  # zero gradients: only the decay moves a leaf
    updates, _ = optimizer.update(jax.tree.map(jnp.zeros_like, params), optimizer.init(params), params)
    moved = jax.tree.map(lambda u: bool(jnp.any(u != 0)), updates)
    assert moved == decayed


@pytest.mark.parametrize(
    ("trainable", "match"),
    [
        ("*/weight", r"matching: pattern '\*/weight' matches none"),
        (
            ({"bias": True},),
            r"fit: argument `trainable` must be a pattern, a sequence of patterns, a predicate",
        ),
        (3, r"fit: argument `trainable` must be .* got 3"),
    ],
)
def test_a_bad_trainable_is_an_error(trainable, match):
    with pytest.raises(LayerConfigError, match=match):
        fn.labels.trainable_mask(fn.models.fashion_mnist_cnn(), SHAPE, trainable)


def test_trainable_takes_patterns_a_predicate_or_a_mask():
    model = fn.models.fashion_mnist_cnn()
    by_pattern = fn.labels.trainable_mask(model, SHAPE, ["*Dense/*"])
    by_predicate = fn.labels.trainable_mask(model, SHAPE, lambda label: "Dense" in label)
    assert by_pattern == by_predicate == fn.labels.trainable_mask(model, SHAPE, by_pattern)
    assert jax.tree.leaves(by_pattern) == [False] * 4 + [True] * 4


@pytest.mark.parametrize("frozen", ["x", {"bias": True}, ({"bias": 1, "kernel": 0},)])
def test_freeze_refuses_a_mask_of_another_structure_or_not_of_bools(frozen):
    model = fn.serial(fn.Dense(2))
    params = model.init(jax.random.key(0), (-1, 3))[1]
    with pytest.raises(LayerConfigError, match=r"freeze: argument `frozen` must be a mask of bools of the parameters"):
        fn.labels.freeze(optax.adam(0.1), frozen).init(params)
