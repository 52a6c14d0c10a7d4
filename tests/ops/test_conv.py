"""Forward convolution: naive reference, exact count maps, transposed convolution."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from funcnn import LayerConfigError, checks, ops, shapes
from tests.reference import conv_reference

pytestmark = pytest.mark.usefixtures("x64")


def _random(shape, seed):
    return jax.random.normal(jax.random.key(seed), shape, jnp.float64)


@pytest.mark.parametrize(
    "spatial, ksize, strides, padding, dilation, groups",
    [
        ((7,), (3,), (1,), "VALID", (1,), 1),
        ((8,), (2,), (3,), "SAME", (2,), 2),
        ((6, 7), (3, 3), (1, 1), "VALID", (1, 1), 1),
        ((6, 7), (3, 2), (2, 1), "SAME", (1, 1), 1),
        ((7, 6), (2, 3), (2, 3), ((1, 2), (0, 1)), (1, 2), 2),
        ((6, 6), (3, 3), (1, 1), ((-1, 1), (2, -1)), (1, 1), 4),
        ((4, 5, 4), (2, 3, 2), (1, 2, 1), "SAME", (1, 1, 2), 1),
    ],
)
def test_conv_matches_naive_reference(spatial, ksize, strides, padding, dilation, groups):
    c_in, c_out = 4, 4
    x = _random((2, *spatial, c_in), 0)
    kernel = _random((*ksize, c_in // groups, c_out), 1)
    bias = _random((c_out,), 2)
    y = ops.conv(x, kernel, bias, strides=strides, padding=padding, dilation=dilation, groups=groups)
    pads = shapes.padding_pairs(
        "test", checks.padding_spec("test", padding), spatial, ksize, strides, dilation
    )
    expected = conv_reference(x, kernel, bias, strides, pads, dilation, groups)
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


@given(
    rank=st.integers(1, 2),
    n=st.integers(3, 7),
    f=st.integers(1, 3),
    s=st.integers(1, 3),
    d=st.integers(1, 2),
    lo=st.integers(-1, 2),
    hi=st.integers(-1, 2),
    groups=st.sampled_from([1, 2]),
)
def test_conv_matches_naive_reference_property(rank, n, f, s, d, lo, hi, groups):
    assume((n + lo + hi - d * (f - 1) - 1) // s + 1 >= 1)
    x = _random((1, *(n,) * rank, 2), 3)
    kernel = _random((*(f,) * rank, 2 // groups, 2), 4)
    pads = ((lo, hi),) * rank
    y = ops.conv(x, kernel, strides=s, padding=pads, dilation=d, groups=groups)
    expected = conv_reference(x, kernel, None, (s,) * rank, pads, (d,) * rank, groups)
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


def test_ones_image_ones_kernel_count_maps():
    """Each output counts the image pixels under the kernel: 9 inside, fewer at the SAME borders."""
    x = jnp.ones((1, 5, 5, 1), jnp.float64)
    kernel = jnp.ones((3, 3, 1, 1), jnp.float64)
    valid = ops.conv(x, kernel, padding="VALID")[0, :, :, 0]
    np.testing.assert_array_equal(valid, np.full((3, 3), 9.0))
    same = ops.conv(x, kernel, padding="SAME")[0, :, :, 0]
    expected = [[4, 6, 6, 6, 4], [6, 9, 9, 9, 6], [6, 9, 9, 9, 6], [6, 9, 9, 9, 6], [4, 6, 6, 6, 4]]
    np.testing.assert_array_equal(same, np.array(expected, np.float64))


def test_grouped_conv_poking_one_channel_moves_only_its_group():
    """Haiku's test: a change in input channel 0 reaches only the outputs of group 0."""
    kernel = _random((3, 3, 1, 4), 5)
    x = jnp.zeros((1, 5, 5, 2), jnp.float64)
    poked = x.at[0, 2, 2, 0].set(1.0)
    delta = ops.conv(poked, kernel, groups=2) - ops.conv(x, kernel, groups=2)
    assert np.abs(delta[..., :2]).max() > 0
    np.testing.assert_array_equal(delta[..., 2:], 0.0)


@pytest.mark.parametrize(
    "n, f, s, padding, output_padding, expected",
    [(4, 3, 2, "SAME", 0, 8), (4, 3, 2, "VALID", 0, 9), (4, 3, 2, "VALID", 1, 10), (5, 2, 1, "VALID", 0, 6)],
)
def test_conv_transpose_output_size(n, f, s, padding, output_padding, expected):
    x = _random((1, n, n, 2), 6)
    kernel = _random((f, f, 2, 3), 7)
    y = ops.conv_transpose(x, kernel, strides=s, padding=padding, output_padding=output_padding)
    assert y.shape == (1, expected, expected, 3)


def test_conv_transpose_is_the_adjoint_of_conv_with_the_rotated_kernel():
    """<conv(x, K), u> = <x, conv_transpose(u, rot180(K) with in/out swapped)> for VALID, stride s."""
    x = _random((2, 9, 9, 3), 8)
    kernel = _random((3, 3, 3, 4), 9)
    y = ops.conv(x, kernel, strides=2)
    u = _random(y.shape, 10)
    rotated = jnp.swapaxes(kernel[::-1, ::-1], 2, 3)
    back = ops.conv_transpose(u, rotated, strides=2, padding="VALID")
    np.testing.assert_allclose(jnp.vdot(y, u), jnp.vdot(x, back), rtol=1e-12)


@pytest.mark.parametrize(
    "x_shape, k_shape, kwargs, match",
    [
        ((1, 5, 5), (3, 3, 1, 1), {}, r"conv: argument `x` must have rank 4.*shape \(1, 5, 5\)"),
        ((1, 5, 5, 3), (3, 3, 1, 1), {}, r"conv: argument `x` has 3 channels but the kernel expects 1"),
        (
            (1, 5, 5, 4),
            (3, 3, 2, 3),
            {"groups": 2},
            r"conv: argument `groups`=2 does not divide the kernel's output channels 3 \(kernel.shape=\(3, 3, 2, 3\)\)",
        ),
        ((1, 2, 2, 1), (3, 3, 1, 1), {}, r"conv: argument `kernel` \(3, 3\).*larger than the padded input \(2, 2\)"),
        ((1, 5, 5, 1), (3, 3, 1, 1), {"padding": "FULL"}, r"`padding` must be 'VALID', 'SAME'.*'FULL'"),
        (
            (1, 5, 5, 1),
            (3, 3, 1, 1),
            {"strides": 0},
            r"conv: argument `strides` must be a positive integer, got 0",
        ),
        ((1, 5, 5, 1), (3, 3, 1, 1), {"strides": (1, 1, 1)}, r"`strides` has 3 entries.*2 spatial"),
    ],
)
def test_conv_errors(x_shape, k_shape, kwargs, match):
    with pytest.raises(LayerConfigError, match=match):
        ops.conv(jnp.ones(x_shape), jnp.ones(k_shape), **kwargs)


def test_unknown_grad_mode_is_an_error():
    with pytest.raises(LayerConfigError, match=r"conv: argument `grad` must be one of"):
        ops.conv(jnp.ones((1, 3, 3, 1)), jnp.ones((1, 1, 1, 1)), grad="numeric")


@pytest.mark.parametrize(
    "x_shape, k_shape, kwargs, match",
    [
        ((1, 5, 5, 1), (3, 1), {}, r"conv: argument `kernel` must have rank 3, 4 or 5 .* got shape \(3, 1\)"),
        (
            (1, 5, 5, 1),
            (3, 3, 1, 1),
            {"groups": 0},
            r"conv: argument `groups` must be a positive integer, got 0",
        ),
        (
            (1, 5, 5, 2),
            (3, 3, 2, 4),
            {"bias": (3,)},
            r"conv: argument `bias` has shape \(3,\) but the kernel has 4 output channels; expected \(4,\)",
        ),
    ],
)
def test_more_conv_errors(x_shape, k_shape, kwargs, match):
    if "bias" in kwargs:
        kwargs["bias"] = jnp.ones(kwargs["bias"])
    with pytest.raises(LayerConfigError, match=match):
        ops.conv(jnp.ones(x_shape), jnp.ones(k_shape), **kwargs)


def test_dense_op_errors():
    with pytest.raises(
        LayerConfigError, match=r"dense: argument `x` has shape \(2, 3\) but the kernel has shape \(4, 5\)"
    ):
        ops.dense(jnp.ones((2, 3)), jnp.ones((4, 5)))
    with pytest.raises(
        LayerConfigError, match=r"dense: argument `bias` has shape \(4,\) but the kernel has 5 output"
    ):
        ops.dense(jnp.ones((2, 4)), jnp.ones((4, 5)), jnp.ones(4))


def test_conv_transpose_padding_that_leaves_no_output():
    with pytest.raises(LayerConfigError, match=r"conv_transpose: argument `padding` leaves no output"):
        ops.conv_transpose(jnp.ones((1, 2, 2, 1)), jnp.ones((3, 3, 1, 1)), padding=((4, 4), (4, 4)))


@pytest.mark.parametrize("f, s, d", [(1, 2, 1), (2, 3, 1), (3, 2, 1), (2, 2, 2), (1, 3, 1)])
def test_conv_transpose_same_gives_n_times_stride(f, s, d):
    y = ops.conv_transpose(jnp.ones((1, 5, 1)), jnp.ones((f, 1, 2)), strides=s, dilation=d, padding="SAME")
    assert y.shape == (1, 5 * s, 2)


def test_mixed_floating_operands_compute_in_the_wider_dtype():
    x = jnp.ones((1, 4, 4, 1), jnp.float16)
    kernel = jnp.ones((3, 3, 1, 2), jnp.float32)
    assert ops.conv(x, kernel).dtype == jnp.float32
    assert ops.conv(jnp.ones((1, 4, 4, 1), jnp.uint8), kernel.astype(jnp.bfloat16)).dtype == jnp.bfloat16


@pytest.mark.parametrize("f, s, d", [(1, 2, 1), (2, 3, 1), (3, 2, 1), (2, 2, 2), (4, 3, 1)])
def test_conv_transpose_same_with_output_padding_gives_n_times_stride_minus_it(f, s, d):
    """Equinox's rule: ``n s - p``, which ``conv(padding="SAME", strides=s)`` maps back to ``n``."""
    for p in range(s):
        y = ops.conv_transpose(
            jnp.ones((1, 5, 1)), jnp.ones((f, 1, 2)), strides=s, dilation=d, padding="SAME", output_padding=p
        )
        assert y.shape == (1, 5 * s - p, 2)
        assert ops.conv(y, jnp.ones((f, 2, 1)), strides=s, dilation=d, padding="SAME").shape == (1, 5, 1)


def test_conv_transpose_output_shape_picks_the_output_padding():
    x, kernel = _random((1, 4, 4, 2), 11), _random((3, 3, 2, 3), 12)
    by_shape = ops.conv_transpose(x, kernel, strides=2, output_shape=(10, 9))
    assert by_shape.shape == (1, 10, 9, 3)
    np.testing.assert_array_equal(by_shape, ops.conv_transpose(x, kernel, strides=2, output_padding=(1, 0)))
    same = ops.conv_transpose(x, kernel, strides=2, padding="SAME", output_shape=7)
    np.testing.assert_array_equal(
        same, ops.conv_transpose(x, kernel, strides=2, padding="SAME", output_padding=1)
    )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (
            {"strides": 2, "output_shape": (20, 8)},
            r"^conv_transpose: argument `output_shape` \(20, 8\) cannot be reached from the input's spatial "
            r"shape \(4, 4\): the reachable sizes are 9 to 10, 9 to 10 \(one range per axis\)",
        ),
        (
            {"strides": 2, "padding": "SAME", "output_shape": (8, 6)},
            r"^conv_transpose: argument `output_shape` \(8, 6\) cannot be reached .* 7 to 8, 7 to 8",
        ),
        (
            {"strides": 2, "output_padding": 1, "output_shape": 9},
            r"^conv_transpose: argument `output_padding` must be 0 when `output_shape` is given",
        ),
        (
            {"padding": "SAME", "dilation": 2, "output_padding": 1},
            r"^conv_transpose: argument `output_padding` \(1,\) must be smaller than the stride \(1,\) on "
            r"every axis with padding='SAME'",
        ),
        (
            {"output_shape": -3},
            r"^conv_transpose: argument `output_shape` must be a positive integer, got -3",
        ),
        (
            {"output_shape": (9, 9, 9)},
            r"^conv_transpose: argument `output_shape` has 3 entries \(9, 9, 9\) but the input has 2 spatial",
        ),
    ],
)
def test_conv_transpose_output_shape_errors(kwargs, match):
    with pytest.raises(LayerConfigError, match=match):
        ops.conv_transpose(jnp.ones((1, 4, 4, 2)), jnp.ones((3, 3, 2, 4)), **kwargs)
