"""The course's formulas, SAME padding, neuron and parameter counts, summary."""

import re

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


def _rows(table):
    """The table's rows as (indented label, output shape, params, state), header and totals dropped."""
    return [tuple(re.split(r"(?<=\S)\s{2,}", line.rstrip())) for line in table.splitlines()[3:-2]]


def test_summary_lists_every_layer():
    table = fn.summary(fn.models.seed_cnn(), (-1, 28, 28, 1))
    lines = table.splitlines()
    assert lines[0] == "input (-1, 28, 28, 1)"
    rows = _rows(table)
    assert rows[0] == ("serial", "(-1, 10)", "693,962", "0")
    assert rows[1] == ("  0: Conv", "(-1, 26, 26, 32)", "320", "0")
    assert rows[3] == ("  2: MaxPool", "(-1, 13, 13, 32)", "0", "0")
    assert rows[4] == ("  3: Flatten", "(-1, 5408)", "0", "0")
    assert rows[7] == ("  6: Dense", "(-1, 10)", "1,290", "0")
    assert lines[-2:] == ["trainable params: 693,962", "state values:     0"]


def test_summary_of_a_single_layer():
    assert _rows(fn.summary(fn.Dense(4), (-1, 3))) == [("Dense", "(-1, 4)", "16", "0")]


def test_summary_nests_residual_and_parallel_blocks_and_splits_state():
    model = fn.serial(
        fn.Conv(4, 3, padding="SAME"),
        fn.residual(fn.Conv(4, 3, padding="SAME"), fn.BatchNorm()),
        fn.fan_out(2),
        fn.parallel(fn.Relu(), fn.Dense(2)),
        fn.fan_in_concat(),
    )
    table = fn.summary(model, (-1, 8, 8, 1))
    assert [row[0] for row in _rows(table)] == [
        "serial", "  0: Conv", "  1: residual", "    0: Conv", "    1: BatchNorm", "  2: fan_out",
        "  3: parallel", "    0: Relu", "    1: Dense", "  4: fan_in_concat",
    ]  # fmt: skip
    rows = {row[0].strip(): row for row in _rows(table)}
    assert rows["1: residual"][1:] == ("(-1, 8, 8, 4)", str(4 * 9 * 4 + 4 + 8), "8")
    assert rows["1: BatchNorm"][2:] == ("8", "8")
    assert rows["3: parallel"][1] == "((-1, 8, 8, 4), (-1, 8, 8, 2))"
    conv_params = 9 * 1 * 4 + 4
    total = conv_params + (4 * 9 * 4 + 4 + 8) + (4 * 2 + 2)
    assert table.splitlines()[-2:] == [f"trainable params: {total:,}", "state values:     8"]


def test_summary_of_a_users_own_layer_pair():
    dense = fn.Dense(3)
    mine = fn.Layer(lambda key, shape: dense.init(key, shape), dense.apply)
    assert [row[0] for row in _rows(fn.summary(mine, (-1, 2)))] == ["Layer", "  0: Dense"]


def test_summary_names_a_constructor_that_was_not_called():
    with pytest.raises(fn.LayerConfigError, match=r"summary: argument `layer` is the function `Relu`, not a layer; did you mean `Relu\(\)`\?"):
        fn.summary(fn.Relu, (-1, 3))
