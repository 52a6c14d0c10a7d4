"""stax's ``_CheckShapeAgreement``: the shape ``init`` predicts is the shape ``apply`` returns."""

import itertools

import jax
import jax.numpy as jnp
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import funcnn as fn
from funcnn.shapes import conv_output_size


def check_shape_agreement(layer, input_shape, batch=2):
    """``init`` with an unknown batch ``-1``; ``apply`` traced (``jax.eval_shape``) on a concrete batch."""
    out_shape, params, state = layer.init(jax.random.key(0), (-1, *input_shape[1:]))
    x = jax.ShapeDtypeStruct((batch, *input_shape[1:]), jnp.float32)
    y, new_state = jax.eval_shape(
        lambda p, s, x: layer.apply(p, s, x, key=jax.random.key(2), train=True), params, state, x
    )
    assert out_shape[0] == -1
    assert y.shape == (batch, *out_shape[1:]), (out_shape, y.shape)
    assert jax.tree_util.tree_structure(new_state) == jax.tree_util.tree_structure(state)
    return out_shape


CONV_GRID = [
    (spatial, k, s, p, d, g)
    for spatial, k, s, p, d, g in itertools.product(
        [(9,), (8, 7), (5, 6, 5)], [1, 2, 3], [1, 2, 3], ["VALID", "SAME", 1, "pairs"], [1, 2], [1, 2]
    )
    if (d * (k - 1) + 1) <= min(spatial) and (len(spatial) < 3 or (s, d) != (3, 2))
]


@pytest.mark.parametrize("spatial, k, s, padding, d, groups", CONV_GRID)
def test_conv_shape_agreement(spatial, k, s, padding, d, groups):
    rank = len(spatial)
    padding = ((1, 0),) * rank if padding == "pairs" else padding
    check_shape_agreement(fn.Conv(4, k, s, padding, d, groups), (-1, *spatial, 4))


@pytest.mark.parametrize("rank", [1, 2, 3])
@pytest.mark.parametrize(
    "s, padding, output_padding", [(1, "VALID", 0), (2, "SAME", 0), (2, "VALID", 1), (3, 1, 2)]
)
def test_conv_transpose_shape_agreement(rank, s, padding, output_padding):
    layer = fn.ConvTranspose(4, (3,) * rank, s, padding, groups=2, output_padding=output_padding)
    check_shape_agreement(layer, (-1, *(4,) * rank, 2))


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_conv_padding_modes_shape_agreement(mode):
    out = check_shape_agreement(fn.Conv(3, 3, padding="SAME", padding_mode=mode), (-1, 6, 6, 2))
    assert out == (-1, 6, 6, 3)


@pytest.mark.parametrize(
    "layer_fn, spatial",
    [
        (lambda: fn.MaxPool(2), (8, 8)),
        (lambda: fn.MaxPool(3, 2, "SAME"), (7, 5)),
        (lambda: fn.MaxPool((2, 2, 2), 1), (4, 4, 4)),
        (lambda: fn.AvgPool(2), (9,)),
        (lambda: fn.AvgPool(3, 1, "SAME", count_include_pad=False), (6, 6)),
        (lambda: fn.AvgPool(2, 2, ((1, 0), (0, 1))), (5, 5)),
        (lambda: fn.GlobalMaxPool(), (5, 6)),
        (lambda: fn.GlobalAvgPool(), (4, 4, 3)),
        (lambda: fn.Flatten(), (3, 4)),
        (lambda: fn.FixedConv(fn.filters.sobel(0), padding="SAME"), (6, 6)),
        (lambda: fn.FixedConv(fn.filters.gaussian(5, 1.0), strides=2), (9, 9)),
    ],
)
def test_pool_and_fixed_shape_agreement(layer_fn, spatial):
    channels = 1 if "FixedConv" in fn.identity.layer_name(layer_fn()) else 3
    check_shape_agreement(layer_fn(), (-1, *spatial, channels))


@pytest.mark.parametrize(
    "layer",
    [
        fn.Relu(),
        fn.Sigmoid(),
        fn.Tanh(),
        fn.LeakyRelu(0.2),
        fn.Elu(0.5),
        fn.Gelu(),
        fn.Softmax(),
        fn.LogSoftmax(),
        fn.Dropout(0.5),
        fn.BatchNorm(),
        fn.LayerNorm(),
        fn.GroupNorm(2),
        fn.Dense(5),
    ],
    ids=lambda layer: fn.identity.layer_name(layer),
)
def test_elementwise_and_dense_shape_agreement(layer):
    check_shape_agreement(layer, (-1, 4, 4, 4))


@given(
    n=st.integers(1, 12),
    k=st.integers(1, 4),
    s=st.integers(1, 4),
    d=st.integers(1, 3),
    lo=st.integers(0, 3),
    hi=st.integers(0, 3),
)
def test_conv_output_size_matches_lax(n, k, s, d, lo, hi):
    assume(conv_output_size(n, k, s, (lo, hi), d) >= 1)
    expected_dilated = jax.eval_shape(
        lambda: jax.lax.conv_general_dilated(
            jnp.ones((1, 1, n)), jnp.ones((1, 1, k)), (s,), ((lo, hi),), rhs_dilation=(d,)
        )
    ).shape
    assert conv_output_size(n, k, s, (lo, hi), d) == expected_dilated[-1]


@given(
    rank=st.integers(1, 3),
    n=st.integers(4, 9),
    k=st.integers(1, 3),
    s=st.integers(1, 3),
    d=st.integers(1, 2),
    padding=st.sampled_from(["VALID", "SAME", 0, 1, 2]),
    groups=st.sampled_from([1, 2]),
    use_bias=st.booleans(),
)
def test_conv_shape_agreement_property(rank, n, k, s, d, padding, groups, use_bias):
    assume(d * (k - 1) + 1 <= n)
    check_shape_agreement(fn.Conv(4, k, s, padding, d, groups, use_bias), (-1, *(n,) * rank, 2))


@given(
    rank=st.integers(1, 3),
    n=st.integers(3, 9),
    window=st.integers(1, 3),
    s=st.one_of(st.none(), st.integers(1, 3)),
    padding=st.sampled_from(["VALID", "SAME", "pairs"]),
    average=st.booleans(),
)
def test_pool_shape_agreement_property(rank, n, window, s, padding, average):
    padding = ((window // 2, 0),) * rank if padding == "pairs" else padding
    layer = fn.AvgPool(window, s, padding) if average else fn.MaxPool(window, s, padding)
    check_shape_agreement(layer, (-1, *(n,) * rank, 3))
