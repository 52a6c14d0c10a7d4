"""The course's formulas, SAME padding, neuron and parameter counts, summary."""

import re

import jax
import jax.numpy as jnp
import pytest
from hypothesis import given
from hypothesis import strategies as st

import funcnn as fn
from funcnn.identity import make_layer
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
    """The table's rows as (indented label, output shape, params, state, FLOPs), header and totals dropped."""
    return [tuple(re.split(r"(?<=\S)\s{2,}", line.rstrip())) for line in table.splitlines()[3:-3]]


def test_summary_lists_every_layer():
    table = fn.summary(fn.models.seed_cnn(), (-1, 28, 28, 1))
    lines = table.splitlines()
    assert lines[0] == "input (-1, 28, 28, 1)"
    rows = _rows(table)
    conv, pool, hidden, output = 2 * 26 * 26 * 32 * 9, 4 * 13 * 13 * 32, 2 * 5408 * 128, 2 * 128 * 10
    total = conv + pool + hidden + output
    assert rows[0] == ("serial", "(-1, 10)", "693,962", "0", f"{total:,}")
    assert rows[1] == ("  0: Conv", "(-1, 26, 26, 32)", "320", "0", f"{conv:,}")
    assert rows[2] == ("  1: Relu", "(-1, 26, 26, 32)", "0", "0", "0")
    assert rows[3] == ("  2: MaxPool", "(-1, 13, 13, 32)", "0", "0", f"{pool:,}")
    assert rows[4] == ("  3: Flatten", "(-1, 5408)", "0", "0", "0")
    assert rows[5] == ("  4: Dense", "(-1, 128)", "692,352", "0", f"{hidden:,}")
    assert rows[7] == ("  6: Dense", "(-1, 10)", "1,290", "0", f"{output:,}")
    assert lines[1].split() == ["layer", "output", "shape", "params", "state", "FLOPs"]
    assert lines[-3:] == ["trainable params: 693,962", "state values:     0", f"FLOPs, 1 example: {total:,}"]


def test_summary_of_a_single_layer():
    assert _rows(fn.summary(fn.Dense(4), (-1, 3))) == [("Dense", "(-1, 4)", "16", "0", "24")]


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
    residual_flops = 2 * 8 * 8 * 4 * (9 * 4) + 8 * 8 * 4  # the body's Conv, then the skip's addition
    assert rows["1: residual"][1:] == ("(-1, 8, 8, 4)", str(4 * 9 * 4 + 4 + 8), "8", f"{residual_flops:,}")
    assert rows["1: BatchNorm"][2:] == ("8", "8", "0")
    assert rows["3: parallel"][1] == "((-1, 8, 8, 4), (-1, 8, 8, 2))"
    conv_params = 9 * 1 * 4 + 4
    total = conv_params + (4 * 9 * 4 + 4 + 8) + (4 * 2 + 2)
    assert table.splitlines()[-3:-1] == [f"trainable params: {total:,}", "state values:     8"]


def test_summary_of_a_users_own_layer_pair():
    dense = fn.Dense(3)
    mine = fn.Layer(lambda key, shape: dense.init(key, shape), dense.apply)
    assert [row[0] for row in _rows(fn.summary(mine, (-1, 2)))] == ["Layer", "  0: Dense"]


def test_summary_names_a_constructor_that_was_not_called():
    with pytest.raises(fn.LayerConfigError, match=r"summary: argument `layer` is the function `Relu`, not a layer; did you mean `Relu\(\)`\?"):
        fn.summary(fn.Relu, (-1, 3))


def test_summary_gives_a_plain_layer_pair_inside_a_serial_its_own_row():
    def init(key, shape):
        return (*shape[:-1], 3), {"w": jnp.zeros((shape[-1], 3))}, ()

    def apply(params, state, x, *, key=None, train=False):
        return x @ params["w"], state

    model = fn.serial(fn.Dense(4), fn.Layer(init, apply), fn.Relu(), fn.Dense(2))
    table = fn.summary(model, (-1, 5))
    rows = _rows(table)
    assert [row[0] for row in rows] == ["serial", "  0: Dense", "  1: Layer", "  2: Relu", "  3: Dense"]
    assert rows[2][1:3] == ("(-1, 3)", "12")
    total = 5 * 4 + 4 + 4 * 3 + 3 * 2 + 2
    assert rows[0][2] == str(total) and sum(int(row[2]) for row in rows[1:]) == total
    assert table.splitlines()[-3] == f"trainable params: {total}"


def _xla_flops(model, input_shape):
    """XLA's FLOPs for one example of ``model``'s compiled forward pass."""
    _, params, state = model.init(jax.random.key(0), input_shape)
    x = jnp.ones((1, *input_shape[1:]))
    cost = jax.jit(lambda x: model.apply(params, state, x)[0]).lower(x).compile().cost_analysis()
    return (cost[0] if isinstance(cost, list) else cost)["flops"]


def _summary_flops(model, input_shape):
    last = fn.summary(model, input_shape).splitlines()[-1]
    assert last.startswith("FLOPs, 1 example: ")
    return int(last.split(": ")[1].replace(",", ""))


def test_summary_flops_of_a_conv_dense_model_are_within_two_percent_of_xla():
    # XLA also counts what the analytic count leaves out (Relu: one per element) and counts a
    # max pool's window - 1 comparisons per output: here +0.5%, 2% leaves room for XLA's fusions.
    model = fn.serial(fn.Conv(16, 3), fn.Relu(), fn.MaxPool(2), fn.Flatten(), fn.Dense(10))
    analytic = _summary_flops(model, (-1, 16, 16, 8))
    assert analytic == 2 * 14 * 14 * 16 * 72 + 4 * 7 * 7 * 16 + 2 * 784 * 10
    assert analytic == pytest.approx(_xla_flops(model, (-1, 16, 16, 8)), rel=0.02)


@pytest.mark.parametrize(
    "layer, input_shape",
    [
        (fn.Conv(16, 3, use_bias=False), (-1, 16, 16, 8)),
        (fn.Conv(8, (3, 2), strides=2, dilation=(1, 2), groups=4, use_bias=False), (-1, 15, 15, 8)),
        (fn.Conv(4, 3, use_bias=False), (-1, 12, 5)),
        (fn.ConvTranspose(4, 3, strides=2, use_bias=False), (-1, 8, 8, 8)),
        (fn.Dense(10, use_bias=False), (-1, 100)),
        (fn.AvgPool(2), (-1, 8, 8, 4)),
        (fn.GlobalAvgPool(), (-1, 8, 8, 4)),
    ],
    ids=["conv", "grouped", "conv1d", "conv-transpose", "dense", "avg-pool", "global-avg-pool"],
)
def test_layer_flops_equal_xla_where_the_conventions_agree(layer, input_shape):
    # No padding, no bias, no elementwise work: XLA counts the same products and sums.
    assert _summary_flops(layer, input_shape) == _xla_flops(layer, input_shape)


def test_pool_flops_count_every_window_element_of_every_output():
    assert fn.shapes.pool_flops(3)((-1, 9, 9, 4), (-1, 4, 4, 4), ()) == 9 * 4 * 4 * 4
    assert fn.shapes.pool_flops((2, 1))((-1, 8, 8, 4), ((-1, 4, 8, 4),) * 2, ()) == 2 * 4 * 8 * 4
    assert fn.shapes.adaptive_pool_flops((-1, 8, 8, 4), (-1, 3, 3, 4), ()) == (3 + 4 + 3) ** 2 * 4
    assert fn.shapes.input_size_flops((-1, 8, 8, 4), (-1, 4), ()) == 256


def test_a_layer_registers_its_own_flops_and_combinators_add_their_childrens():
    def init(key, shape):
        return shape, (), ()

    def apply(params, state, x, *, key=None, train=False):
        return 3 * x, state

    def flops(input_shape, output_shape, params):
        return num_neurons(output_shape[1:])

    scale = make_layer("Scale", init, apply, flops=flops)
    model = fn.serial(
        fn.Dense(4),
        fn.fan_out(3),
        fn.parallel(scale, fn.Relu(), scale),
        fn.fan_in_sum(),
        fn.Layer(init, apply),
    )
    rows = {row[0].strip(): row[4] for row in _rows(fn.summary(model, (-1, 5)))}
    dense, scaled, summed = 2 * 5 * 4, 4, 2 * 4  # fan_in_sum: 2 additions per element of (-1, 4)
    names = ("0: Dense", "2: parallel", "0: Scale", "1: Relu", "3: fan_in_sum", "4: Layer")
    assert [rows[name] for name in names] == [str(dense), str(2 * scaled), str(scaled), "0", str(summed), "0"]
    assert rows["serial"] == str(dense + 2 * scaled + summed)
