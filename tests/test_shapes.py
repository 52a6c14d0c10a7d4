"""The course's formulas, SAME padding, neuron and parameter counts, summary."""

import jax
import pytest
from hypothesis import given
from hypothesis import strategies as st

import funcnn as fn
from funcnn.shapes import conv_output_size, num_neurons, pool_output_size, same_padding


def test_course_formulas():
    assert conv_output_size(28, 3) == 28 - 3 + 1
    assert conv_output_size(7, 3, stride=2, padding=1) == (7 + 2 * 1 - 3) // 2 + 1 == 4
    assert conv_output_size(6, 3, stride=1, padding=(1, 1)) == 6
    assert pool_output_size(26, 2) == (26 - 2) // 2 + 1 == 13
    assert pool_output_size(7, 3, 2) == (7 - 3) // 2 + 1 == 3
    assert conv_output_size(5, 2, dilation=2) == 5 - 3 + 1


@given(n=st.integers(1, 64), f=st.integers(1, 7), s=st.integers(1, 4), d=st.integers(1, 3))
def test_same_padding_gives_ceil_n_over_s(n, f, s, d):
    lo, hi = same_padding(n, f, s, d)
    assert 0 <= hi - lo <= 1
    assert conv_output_size(n, f, s, (lo, hi), d) == -(-n // s)
    assert (lo, hi) == jax.lax.padtype_to_pads((n,), ((f - 1) * d + 1,), (s,), "SAME")[0]


def test_same_padding_for_odd_kernels_is_half_the_kernel():
    for f in (1, 3, 5, 7):
        assert same_padding(28, f) == ((f - 1) // 2, (f - 1) // 2)


def test_num_neurons_is_w_h_c():
    assert num_neurons((28, 28, 1)) == 784
    assert num_neurons((32, 32, 3)) == 3072


def test_count_params_of_the_seed_cnn():
    _, params, _ = fn.models.seed_cnn().init(jax.random.key(0), (-1, 28, 28, 1))
    conv = 3 * 3 * 1 * 32 + 32
    dense = 13 * 13 * 32 * 128 + 128
    output = 128 * 10 + 10
    assert fn.count_params(params) == conv + dense + output


def test_summary_lists_every_layer():
    table = fn.summary(fn.models.seed_cnn(), (-1, 28, 28, 1))
    lines = table.splitlines()
    assert lines[0] == "input (-1, 28, 28, 1)"
    assert "0: Conv" in lines[3] and "(-1, 26, 26, 32)" in lines[3] and "320" in lines[3]
    assert "2: MaxPool" in lines[5] and "(-1, 13, 13, 32)" in lines[5]
    assert "3: Flatten" in lines[6] and "(-1, 5408)" in lines[6]
    assert "6: Dense" in lines[9] and "(-1, 10)" in lines[9]
    assert lines[-1] == "total params: 693,962"


def test_summary_of_a_single_layer():
    assert "0: Dense" in fn.summary(fn.Dense(4), (-1, 3))


@pytest.mark.parametrize("name", sorted(fn.models.MODELS))
def test_models_take_28x28_images_to_10_logits(name):
    shape, params, state = fn.models.MODELS[name]().init(jax.random.key(0), fn.models.INPUT_SHAPE)
    assert shape == (-1, 10)
    y, _ = jax.jit(fn.models.MODELS[name]().apply)(params, state, jax.numpy.zeros((2, 28, 28, 1)))
    assert y.shape == (2, 10)
