"""Pooling layers: the dtype policy and PyTorch's padding rule."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcnn as fn
from funcnn import ops
from funcnn.layers.pool import AvgPool, GlobalAvgPool, GlobalMaxPool, MaxPool, MaxUnpool
from tests.layers.test_shape_agreement import check_shape_agreement

KEY = jax.random.key(0)


@pytest.mark.parametrize("layer", [fn.AvgPool(2), fn.GlobalAvgPool()])
def test_average_of_uint8_is_computed_in_floating_point(layer):
    """200 + 200 would wrap around in uint8; the mean must be 200."""
    y, _ = layer.apply((), (), jnp.full((1, 4, 4, 1), 200, jnp.uint8))
    assert y.dtype == jnp.float32
    np.testing.assert_array_equal(y, jnp.full(y.shape, 200.0))


def test_max_pool_of_integers_is_exact_in_floating_point():
    x = jnp.arange(16, dtype=jnp.int32).reshape(1, 4, 4, 1)
    y, _ = fn.MaxPool(2).apply((), (), x)
    np.testing.assert_array_equal(y[0, ..., 0], [[5.0, 7.0], [13.0, 15.0]])


@pytest.mark.parametrize("padding", [1, ((1, 1), (0, 1)), "SAME"])
def test_padding_up_to_half_the_window_has_no_window_of_padding_only(padding):
    x = -jnp.ones((1, 5, 5, 1))
    y, _ = fn.MaxPool(3, 2, padding).apply((), (), x)
    assert bool(jnp.all(jnp.isfinite(y)))


@pytest.mark.parametrize(
    "window, padding, match",
    [
        (2, 2, r"MaxPool: argument `padding` 2 must be at most half the window 2 on each side"),
        (
            (3, 2),
            ((1, 1), (2, 0)),
            r"MaxPool: argument `padding` \(\(1, 1\), \(2, 0\)\) must be at most half the window \(3, 2\)",
        ),
        (3, -1, r"MaxPool: argument `padding` must be non-negative, got -1"),
    ],
)
def test_padding_more_than_half_the_window_is_refused(window, padding, match):
    with pytest.raises(fn.LayerConfigError, match=match):
        fn.MaxPool(window, padding=padding)


# --- ceil mode, dilation, keepdims, indices and MaxUnpool --------------------------------


@pytest.mark.parametrize(
    "layer_fn, spatial",
    [
        (lambda: MaxPool(2, ceil_mode=True), (7, 9)),
        (lambda: MaxPool(3, 2, 1, ceil_mode=True), (8,)),
        (lambda: MaxPool(3, 2, 1, dilation=2, ceil_mode=True), (9, 8)),
        (lambda: MaxPool((2, 2, 3), 1, dilation=(1, 2, 2)), (4, 5, 6)),
        (lambda: MaxPool(3, 1, "SAME", dilation=2), (6, 5)),
        (lambda: AvgPool(3, 2, 1, ceil_mode=True, count_include_pad=False), (6, 6)),
        (lambda: AvgPool(2, 3, ceil_mode=True), (5, 4, 7)),
        (lambda: GlobalMaxPool(keepdims=True), (5, 6)),
        (lambda: GlobalAvgPool(keepdims=True), (4, 4, 3)),
        (lambda: GlobalAvgPool(keepdims=True), (7,)),
    ],
)
def test_new_pool_options_shape_agreement(layer_fn, spatial):
    check_shape_agreement(layer_fn(), (-1, *spatial, 3))


@pytest.mark.parametrize(
    "layer, expected",
    [
        (MaxPool(2, ceil_mode=True), (-1, 4, 5, 3)),
        (MaxPool(2), (-1, 3, 4, 3)),
        (MaxPool(3, 1, dilation=2), (-1, 3, 5, 3)),
        (AvgPool(3, 2, 1, ceil_mode=True), (-1, 4, 5, 3)),
        (GlobalMaxPool(keepdims=True), (-1, 1, 1, 3)),
        (GlobalAvgPool(), (-1, 3)),
    ],
)
def test_init_predicts_the_ceil_and_dilated_sizes(layer, expected):
    """7 x 9 input: 2/2 windows give 3 x 4, or 4 x 5 with ceil mode's partial windows; a 3-window
    dilated by 2 spans 5 inputs: 3 x 5."""
    assert layer.init(KEY, (-1, 7, 9, 3))[0] == expected


@pytest.mark.parametrize("pool", [GlobalMaxPool, GlobalAvgPool])
def test_keepdims_keeps_the_values(pool):
    x = jax.random.normal(KEY, (2, 5, 4, 3))
    flat, _ = pool().apply((), (), x)
    kept, _ = pool(keepdims=True).apply((), (), x)
    assert kept.shape == (2, 1, 1, 3)
    np.testing.assert_array_equal(kept.reshape(2, 3), flat)


def _shape_agreement_of_pairs(layer, input_shape, batch=2):
    """``check_shape_agreement`` for layers whose input or output is a pair of arrays."""

    def concrete(shape):
        if isinstance(shape[0], tuple):
            return tuple(concrete(s) for s in shape)
        return jax.ShapeDtypeStruct(
            (batch, *shape[1:]), jnp.int32 if shape is input_shape[-1] else jnp.float32
        )

    out_shape, params, state = layer.init(KEY, input_shape)
    y, _ = jax.eval_shape(lambda x: layer.apply(params, state, x), concrete(input_shape))
    got = tuple((-1, *a.shape[1:]) for a in y) if isinstance(y, tuple) else (-1, *y.shape[1:])
    assert got == out_shape, (got, out_shape)
    return out_shape, y


@pytest.mark.parametrize(
    "window, strides, padding, dilation, ceil_mode, spatial",
    [(2, None, 0, 1, False, (8, 6)), (3, 2, 1, 1, True, (7,)), (2, 1, 1, 2, True, (5, 6, 4))],
)
def test_max_pool_with_indices_outputs_a_pair_init_predicts(
    window, strides, padding, dilation, ceil_mode, spatial
):
    layer = MaxPool(window, strides, padding, dilation=dilation, ceil_mode=ceil_mode, return_indices=True)
    (y_shape, i_shape), (y, indices) = _shape_agreement_of_pairs(layer, (-1, *spatial, 3))
    assert y_shape == i_shape
    assert y.dtype == jnp.float32
    assert indices.dtype == jnp.int32
    x = jax.random.normal(KEY, (2, *spatial, 3))
    values, winners = layer.apply((), (), x)[0]
    expected = ops.max_pool(x, window, strides, padding, dilation=dilation, ceil_mode=ceil_mode)
    np.testing.assert_array_equal(values, expected)
    flat = x.reshape(2, -1, 3)
    np.testing.assert_array_equal(
        jnp.take_along_axis(flat, winners.reshape(2, -1, 3), axis=1).reshape(values.shape), values
    )


def test_max_unpool_layer_inverts_a_tiling_pool_on_its_winners():
    x = jax.random.uniform(KEY, (2, 6, 4, 3), minval=1.0, maxval=2.0)
    pooled, _ = MaxPool(2, return_indices=True).apply((), (), x)
    out_shape, _ = _shape_agreement_of_pairs(MaxUnpool(2), ((-1, 3, 2, 3), (-1, 3, 2, 3)))
    assert out_shape == (-1, 6, 4, 3)
    z, _ = MaxUnpool(2).apply((), (), pooled)
    np.testing.assert_array_equal(jnp.where(z != 0, x, 0.0), z)
    np.testing.assert_array_equal(MaxPool(2).apply((), (), z)[0], pooled[0])


def _segnet():
    """A two-level SegNet: each pool's indices skip the inner layers to their unpool."""
    return fn.serial(
        fn.Conv(4, 3, padding="SAME"),
        fn.Relu(),
        MaxPool(2, return_indices=True),
        fn.parallel(
            fn.serial(
                fn.Conv(4, 3, padding="SAME"),
                fn.Relu(),
                MaxPool(2, return_indices=True),
                fn.parallel(fn.serial(fn.Conv(4, 3, padding="SAME"), fn.Relu()), fn.serial()),
                MaxUnpool(2, output_size=(5, 4)),  # 2 x 2 back to the 5 x 4 the pool saw, not 4 x 4
                fn.Conv(4, 3, padding="SAME"),
            ),
            fn.serial(),
        ),
        MaxUnpool(2, output_size=(10, 9)),
        fn.Conv(1, 3, padding="SAME"),
    )


def test_a_segnet_encoder_decoder_builds_trains_and_summarises():
    model = _segnet()
    out_shape, params, state = model.init(KEY, (-1, 10, 9, 1))
    assert out_shape == (-1, 10, 9, 1)
    x = jax.random.normal(KEY, (2, 10, 9, 1))

    def loss(params):
        y, _ = model.apply(params, state, x)
        return jnp.mean((y - x) ** 2)

    value, grads = jax.jit(jax.value_and_grad(loss))(params)
    assert jnp.isfinite(value)
    leaves = jax.tree_util.tree_leaves(grads)
    assert leaves and all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
    assert all(float(jnp.abs(g).sum()) > 0 for g in leaves)  # every conv gets a gradient
    table = fn.shapes.summary(model, (-1, 10, 9, 1))
    assert "MaxUnpool" in table and "((-1, 5, 4, 4), (-1, 5, 4, 4))" in table


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: MaxPool(2, ceil_mode="yes"), r"MaxPool: argument `ceil_mode` must be True or False, got 'yes' \(str\)"),
        (lambda: AvgPool(2, ceil_mode=None), r"AvgPool: argument `ceil_mode` must be True or False, got None \(NoneType\)"),
        (lambda: MaxPool(2, dilation=0), r"MaxPool: argument `dilation` must be a positive integer, got 0"),
        (lambda: MaxPool(2, return_indices="no"), r"MaxPool: argument `return_indices` must be True or False, got 'no' \(str\)"),
        (lambda: MaxPool(3, 1, "same", ceil_mode=True), r"MaxPool: argument `ceil_mode` True cannot be combined with padding 'SAME'"),
        (lambda: GlobalAvgPool(keepdims=1), r"GlobalAvgPool: argument `keepdims` must be True or False, got 1 \(int\)"),
        (lambda: GlobalMaxPool(keepdims="True"), r"GlobalMaxPool: argument `keepdims` must be True or False, got 'True' \(str\)"),
        (lambda: MaxPool(3, dilation=2).init(KEY, (-1, 4, 4, 1)), r"MaxPool: argument `window` \(3, 3\) dilated by \(2, 2\) is larger than the padded input \(input spatial shape \(4, 4\)"),
        (lambda: MaxUnpool(0), r"MaxUnpool: argument `window` must be a positive integer, got 0"),
        (lambda: MaxUnpool(2, output_size=(4, 0)), r"MaxUnpool: argument `output_size` must be a positive integer or 1 or 2 or 3 of them, got \(4, 0\)"),
        (lambda: MaxUnpool(2, padding="SAME"), r"MaxUnpool: argument `padding` 'SAME' depends on the pooled input's size"),
        (lambda: MaxUnpool(2, grad="fast"), r"MaxUnpool: argument `grad` must be one of \('custom', 'custom_vjp', 'autodiff'\), got 'fast'"),
        (lambda: MaxUnpool(2, dtype="int8"), r"MaxUnpool: argument `dtype` must be a floating-point dtype"),
        (lambda: MaxUnpool(2).init(KEY, (-1, 4, 4, 1)), r"MaxUnpool: argument `input_shape` must be a tuple of shapes \(one per branch\)"),
        (lambda: MaxUnpool(2).init(KEY, ((-1, 4, 4, 1),) * 3), r"MaxUnpool: argument `input_shape` must be the pair of shapes \(values, indices\), got 3 shapes"),
        (lambda: MaxUnpool(2).init(KEY, ((-1, 4, 4, 1), (-1, 4, 3, 1))), r"MaxUnpool: argument `indices` has shape \(-1, 4, 3, 1\) but `values` has shape \(-1, 4, 4, 1\); pass the indices of the max pool that gave these values"),
        (lambda: MaxUnpool(2, output_size=(10, 8)).init(KEY, ((-1, 4, 4, 1),) * 2), r"MaxUnpool: argument `output_size` \(10, 8\) does not fit `values` of spatial shape \(4, 4\): a max pool with window \(2, 2\), strides \(2, 2\) and padding \(\(0, 0\), \(0, 0\)\) gives that shape for input sizes in \(\(7, 9\), \(7, 9\)\) per axis"),
        (lambda: MaxUnpool(2).apply((), (), jnp.ones((1, 4, 4, 1))), r"MaxUnpool: argument `x` must be the pair \(values, indices\) that MaxPool\(..., return_indices=True\) outputs, got an array of shape \(1, 4, 4, 1\)"),
        (lambda: MaxUnpool(2).apply((), (), (jnp.ones((1, 4, 4, 1)),) * 3), r"MaxUnpool: argument `x` must be the pair \(values, indices\) .* got a tuple of 3 entries"),
        (lambda: MaxUnpool(2).apply((), (), (jnp.ones((1, 4, 4, 1)), jnp.ones((1, 4, 4, 1)))), r"MaxUnpool: argument `indices` must be an integer array \(the indices of max_pool\(..., return_indices=True\)\), got dtype float32 \(shape \(1, 4, 4, 1\)\)"),
        (lambda: MaxUnpool(2).apply((), (), (jnp.ones((1, 4, 4, 1)), jnp.zeros((1, 4, 4), jnp.int32))), r"MaxUnpool: argument `indices` has shape \(1, 4, 4\) but `values` has shape \(1, 4, 4, 1\)"),
        (lambda: MaxUnpool((2, 2)).apply((), (), (jnp.ones((1, 4, 1)), jnp.zeros((1, 4, 1), jnp.int32))), r"MaxUnpool: argument `window` has 2 entries \(2, 2\) but the input has 1 spatial dimensions"),
        (lambda: MaxUnpool(2).apply((), (), (jnp.ones((1, 2, 2, 1)), jnp.full((1, 2, 2, 1), 16, jnp.int32))), r"MaxUnpool: argument `indices` holds values from 16 to 16, outside \[0, 16\) for the output spatial shape \(4, 4\)"),
        (lambda: MaxUnpool(2).apply((), (), ("a", jnp.zeros((1, 2, 2, 1), jnp.int32))), r"MaxUnpool: argument `values` must be an array, got 'a' \(str\)"),
        (lambda: MaxUnpool(2).apply({"w": jnp.ones(1)}, (), (jnp.ones((1, 2, 2, 1)), jnp.zeros((1, 2, 2, 1), jnp.int32))), r"MaxUnpool: argument `params` must be empty"),
        (lambda: jax.jit(MaxUnpool(2).apply).lower((), (), (jax.ShapeDtypeStruct((1, 2, 2, 1), jnp.float32), jax.ShapeDtypeStruct((1, 2, 3, 1), jnp.int32))), r"MaxUnpool: argument `indices` has shape \(1, 2, 3, 1\) but `values` has shape \(1, 2, 2, 1\)"),
    ],
)  # fmt: skip
def test_pool_option_and_unpool_errors(call, match):
    with pytest.raises(fn.LayerConfigError, match=match):
        call()
