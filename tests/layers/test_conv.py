"""``Conv``, ``ConvTranspose``, ``FixedConv``: parameters, dtypes, padding modes, param checks."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcnn as fn
from funcnn import ops

KEY = jax.random.key(0)


def test_conv_params_and_dtypes():
    layer = fn.Conv(8, (3, 3), use_bias=False, dtype=jnp.bfloat16, param_dtype=jnp.float32)
    _, params, state = layer.init(KEY, (-1, 5, 5, 2))
    assert set(params) == {"kernel"} and params["kernel"].dtype == jnp.float32
    y, _ = layer.apply(params, state, jnp.ones((1, 5, 5, 2)))
    assert y.dtype == jnp.bfloat16 and state == ()


@pytest.mark.parametrize(
    "mode, np_mode", [("reflect", "reflect"), ("replicate", "edge"), ("circular", "wrap")]
)
def test_conv_padding_modes_pad_then_valid(mode, np_mode):
    layer = fn.Conv(2, 3, padding=1, padding_mode=mode, use_bias=False)
    _, params, _ = layer.init(KEY, (-1, 5, 5, 1))
    x = jax.random.normal(jax.random.key(1), (1, 5, 5, 1))
    y, _ = layer.apply(params, (), x)
    padded = jnp.asarray(np.pad(np.asarray(x), ((0, 0), (1, 1), (1, 1), (0, 0)), mode=np_mode))
    np.testing.assert_allclose(y, ops.conv(padded, params["kernel"]), rtol=1e-6)


def test_conv_transpose_upsamples_by_stride():
    layer = fn.ConvTranspose(3, (2, 2), strides=2, padding="SAME")
    shape, params, _ = layer.init(KEY, (-1, 4, 4, 2))
    assert shape == (-1, 8, 8, 3) and params["kernel"].shape == (2, 2, 2, 3)


@pytest.mark.parametrize("dtype", [jnp.int32, jnp.uint8, jnp.bool_])
def test_integer_and_bool_inputs_compute_in_the_param_dtype(dtype):
    """Never in the input's integer type: the kernel cast to int would be all zeros."""
    layer = fn.Conv(4, 3)
    _, params, _ = layer.init(KEY, (-1, 6, 6, 2))
    x = (jnp.arange(2 * 6 * 6 * 2).reshape(2, 6, 6, 2) % 3).astype(dtype)
    y, _ = layer.apply(params, (), x)
    expected, _ = layer.apply(params, (), x.astype(jnp.float32))
    assert y.dtype == jnp.float32
    chex.assert_trees_all_close(y, expected, rtol=1e-6)
    assert float(jnp.abs(y).sum()) > 0


def test_conv_transpose_and_fixed_conv_promote_integers():
    _, params, _ = fn.ConvTranspose(2, 3, strides=2).init(KEY, (-1, 4, 4, 1))
    y, _ = fn.ConvTranspose(2, 3, strides=2).apply(params, (), jnp.ones((1, 4, 4, 1), jnp.uint8))
    assert y.dtype == jnp.float32
    y, _ = fn.FixedConv(jnp.ones((3, 3, 1, 1), jnp.int32)).apply((), (), jnp.full((1, 4, 4, 1), 2, jnp.uint8))
    assert y.dtype == jnp.float32
    np.testing.assert_array_equal(y, jnp.full((1, 2, 2, 1), 18.0))


def test_explicit_dtype_wins_over_the_input_dtype():
    layer = fn.Conv(2, 3, dtype=jnp.float16)
    _, params, _ = layer.init(KEY, (-1, 5, 5, 1))
    assert layer.apply(params, (), jnp.ones((1, 5, 5, 1), jnp.uint8))[0].dtype == jnp.float16


def test_params_of_another_kernel_size_are_refused_at_trace_time():
    _, params5, _ = fn.Conv(4, 5).init(KEY, (-1, 8, 8, 1))
    with pytest.raises(
        fn.LayerConfigError,
        match=r"Conv: argument `params` leaf 'kernel' has shape \(5, 5, 1, 4\) but init builds \(3, 3, 1, 4\) "
        r"for an input of shape \(2, 8, 8, 1\)",
    ):
        jax.eval_shape(lambda p: fn.Conv(4, 3).apply(p, (), jnp.ones((2, 8, 8, 1))), params5)


def test_missing_and_extra_leaves_are_named():
    _, params, _ = fn.Conv(4, 3).init(KEY, (-1, 8, 8, 1))
    layer = fn.Conv(4, 3)
    with pytest.raises(fn.LayerConfigError, match=r"Conv: argument `params` has no leaf 'bias' \(init builds shape \(4,\)"):
        layer.apply({"kernel": params["kernel"]}, (), jnp.ones((1, 8, 8, 1)))
    with pytest.raises(fn.LayerConfigError, match=r"Conv: argument `params` has unexpected leaves \['bias'\]"):
        fn.Conv(4, 3, use_bias=False).apply(params, (), jnp.ones((1, 8, 8, 1)))


def test_resolution_happens_once_per_trace_not_per_call():
    """The jitted apply runs the checks while tracing; later calls reuse the compiled program."""
    layer = fn.Conv(4, 3, padding="SAME")
    _, params, _ = layer.init(KEY, (-1, 8, 8, 1))
    apply = jax.jit(chex.assert_max_traces(layer.apply, n=1))
    for _ in range(3):
        y, _ = apply(params, (), jnp.ones((2, 8, 8, 1)))
    chex.assert_shape(y, (2, 8, 8, 4))


def test_hints_for_channels_first_input_and_a_missing_batch():
    _, params, _ = fn.Conv(4, 3).init(KEY, (-1, 8, 8, 3))
    with pytest.raises(fn.LayerConfigError, match=r"Conv: argument `x` has 8 channels .* was x passed channels-first\?"):
        fn.Conv(4, 3).apply(params, (), jnp.ones((2, 3, 8, 8)))
    with pytest.raises(
        fn.LayerConfigError, match=r"Conv: argument `kernel_size` \(3, 3\) is 2-D, .* the batch comes first, e.g. \(-1, 28, 28, 1\)"
    ):
        fn.Conv(4, (3, 3)).init(KEY, (28, 28, 1))


@pytest.mark.parametrize("mode, padding, ok", [("reflect", 2, True), ("reflect", 3, False), ("circular", 3, True), ("circular", 4, False), ("replicate", 9, True)])
def test_padding_modes_read_at_most_the_input(mode, padding, ok):
    layer = fn.Conv(2, 3, padding=padding, padding_mode=mode)
    if ok:
        assert layer.init(KEY, (-1, 3, 3, 1))[0][1] == 3 + 2 * padding - 2
    else:
        with pytest.raises(fn.LayerConfigError, match=rf"Conv: argument `padding` .* too large for padding_mode='{mode}' and input spatial shape \(3, 3\)"):
            layer.init(KEY, (-1, 3, 3, 1))
