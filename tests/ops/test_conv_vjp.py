"""The hand-written convolution VJP against JAX's autodiff of the forward pass (float64)."""

import itertools
import random

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from jax import lax
from jax.test_util import check_grads

from funcnn import checks, ops, shapes
from funcnn.shapes import conv_output_size, dilated_size

pytestmark = pytest.mark.usefixtures("x64")

TOLERANCE = 1e-12
# The grid compiles a few hundred small float64 programs; LLVM optimisation is most of
# that time and changes none of the arithmetic being compared.
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}

# (C_in, C_out, groups): dense, two groups, depthwise with channel multiplier 2.
GROUPINGS = {"dense": (3, 4, 1), "groups2": (4, 6, 2), "depthwise": (3, 6, 3)}
PADDINGS = ("VALID", "SAME", "asymmetric", "negative")


def _random(shape, seed, dtype=jnp.float64):
    """Normal samples drawn by NumPy: no per-shape XLA compilation, unlike ``jax.random``."""
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), dtype)


def _explicit(padding, rank):
    """Named padding to the ``padding`` argument of ``ops.conv``."""
    if padding == "asymmetric":
        return ((0, 2), (1, 0), (2, 1))[:rank]
    if padding == "negative":
        return ((-1, 1), (1, -1), (-1, 0))[:rank]
    return padding


def _output_spatial(spatial, ksize, strides, padding, dilation, lhs_dilation):
    lhs = tuple(dilated_size(n, ld) for n, ld in zip(spatial, lhs_dilation, strict=True))
    pads = shapes.padding_pairs("test", checks.padding_spec("test", padding), lhs, ksize, strides, dilation)
    return tuple(
        conv_output_size(n, f, s, p, d)
        for n, f, s, p, d in zip(lhs, ksize, strides, pads, dilation, strict=True)
    )


def _vjps(op, x, kernel, bias, **kwargs):
    """Output and ``(dx, dkernel, dbias)`` of ``op``'s custom rule and of autodiff, in one compiled call."""

    def forward(grad):
        return lambda x, kernel, bias: op(x, kernel, bias, grad=grad, **kwargs)

    def both(x, kernel, bias, cotangent):
        results = []
        for grad in ("custom", "autodiff"):
            y, vjp = jax.vjp(forward(grad), x, kernel, bias)
            results.append((y, *vjp(cotangent)))
        return results

    cotangent = _random(jax.eval_shape(forward("custom"), x, kernel, bias).shape, 9)
    args = (x, kernel, bias, cotangent)
    return jax.jit(both).lower(*args).compile(FAST_COMPILE)(*args)


def _max_error(x, kernel, bias, op=ops.conv, **kwargs):
    custom, autodiff = _vjps(op, x, kernel, bias, **kwargs)
    return max(
        float(np.max(np.abs(np.asarray(a) - np.asarray(b)), initial=0.0))
        for a, b in zip(custom, autodiff, strict=True)
        if a is not None
    )


def _case(batch, spatial, ksize, strides, padding, dilation, lhs_dilation, grouping):
    c_in, c_out, groups = GROUPINGS[grouping]
    rank = len(spatial)
    return {
        "x": (batch, *spatial, c_in),
        "kernel": (*ksize, c_in // groups, c_out),
        "strides": strides,
        "padding": _explicit(padding, rank),
        "dilation": dilation,
        "lhs_dilation": lhs_dilation,
        "groups": groups,
    }


def _fits(case):
    spatial, ksize = case["x"][1:-1], case["kernel"][:-2]
    out = _output_spatial(
        spatial, ksize, case["strides"], case["padding"], case["dilation"], case["lhs_dilation"]
    )
    return min(out) >= 1


def _grid():
    """1-D: the product, groupings in turn; 2-D and 3-D: a fixed sample of the product; empty batches."""
    product_1d = itertools.product((1, 2, 3), (1, 2), (1, 2), PADDINGS, (2, 3))
    cases = [
        _case(2, (7,), (f,), (s,), pad, (d,), (ld,), grouping)
        for (s, ld, d, pad, f), grouping in zip(product_1d, itertools.cycle(GROUPINGS), strict=False)
    ]
    sampler = random.Random(0)
    product_2d = list(
        itertools.product(
            itertools.product((1, 2, 3), repeat=2),
            ((1, 1), (2, 1), (1, 2)),
            ((1, 1), (1, 2), (2, 1)),
            PADDINGS,
            ((3, 3), (2, 3), (2, 2)),
            GROUPINGS,
        )
    )
    for strides, ld, d, pad, ksize, grouping in sampler.sample(product_2d, 60):
        cases.append(_case(2, (6, 7), ksize, strides, pad, d, ld, grouping))
    product_3d = list(
        itertools.product(
            ((1, 1, 1), (2, 1, 3), (3, 2, 1)),
            ((1, 1, 1), (1, 2, 1)),
            ((1, 1, 1), (2, 1, 1)),
            PADDINGS,
            ((2, 3, 2), (3, 2, 1)),
            GROUPINGS,
        )
    )
    for strides, ld, d, pad, ksize, grouping in sampler.sample(product_3d, 16):
        cases.append(_case(1, (5, 6, 5), ksize, strides, pad, d, ld, grouping))
    for rank, grouping in itertools.product((1, 2, 3), GROUPINGS):
        cases.append(
            _case(0, (6,) * rank, (3,) * rank, (2,) * rank, "SAME", (1,) * rank, (1,) * rank, grouping)
        )
    return [case for case in cases if _fits(case)]


GRID = _grid()


def _case_id(case):
    return "-".join(f"{k}={v}" for k, v in case.items()).replace(" ", "")


@pytest.mark.parametrize("case", GRID, ids=[_case_id(c) for c in GRID])
def test_custom_vjp_equals_autodiff(case):
    case = dict(case)
    x = _random(case.pop("x"), 0)
    kernel = _random(case.pop("kernel"), 1)
    bias = _random(kernel.shape[-1:], 2)
    assert _max_error(x, kernel, bias, **case) <= TOLERANCE


def test_stride_past_the_kernel_leaves_unreached_input_with_zero_gradient():
    """n=9, f=2, s=5: windows start at 0 and 5, so inputs 2-4 and 7-8 are never read."""
    x = _random((1, 9, 1), 0)
    kernel = _random((2, 1, 1), 1)
    dx = jax.grad(lambda x: ops.conv(x, kernel, strides=5).sum())(x)
    unreached = np.array([2, 3, 4, 7, 8])
    np.testing.assert_array_equal(dx[0, unreached, 0], np.zeros(5))
    assert _max_error(x, kernel, None, strides=5) <= TOLERANCE


def test_without_bias_the_bias_cotangent_is_none():
    x, kernel = _random((2, 5, 5, 2), 0), _random((3, 3, 2, 2), 1)
    _, vjp = jax.vjp(lambda x, k: ops.conv(x, k, None), x, kernel)
    assert all(c.shape == p.shape for c, p in zip(vjp(_random((2, 3, 3, 2), 2)), (x, kernel), strict=True))
    _, vjp = jax.vjp(lambda x, k, b: ops.conv(x, k, b), x, kernel, None)
    assert vjp(_random((2, 3, 3, 2), 2))[2] is None


@st.composite
def conv_configs(draw):
    """A random convolution: rank 1-3, sizes, strides, dilations, pads (incl. negative), groups."""
    rank = draw(st.integers(1, 3))
    axes = st.tuples(*[st.integers(1, 3)] * rank)
    groups = draw(st.sampled_from([1, 2, 3]))
    return {
        "batch": draw(st.integers(0, 2)),
        "spatial": draw(st.tuples(*[st.integers(3, 7)] * rank)),
        "ksize": draw(axes),
        "strides": draw(axes),
        "dilation": draw(st.tuples(*[st.integers(1, 2)] * rank)),
        "lhs_dilation": draw(st.tuples(*[st.integers(1, 2)] * rank)),
        "padding": draw(st.tuples(*[st.tuples(st.integers(-1, 2), st.integers(-1, 2))] * rank)),
        "groups": groups,
        "channels": (groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))),
    }


@given(conv_configs())
def test_custom_vjp_equals_autodiff_property(config):
    out = _output_spatial(
        config["spatial"],
        config["ksize"],
        config["strides"],
        config["padding"],
        config["dilation"],
        config["lhs_dilation"],
    )
    assume(min(out) >= 1)
    (c_in, c_out), groups = config["channels"], config["groups"]
    x = _random((config["batch"], *config["spatial"], c_in), 0)
    kernel = _random((*config["ksize"], c_in // groups, c_out), 1)
    bias = _random((c_out,), 2)
    error = _max_error(
        x,
        kernel,
        bias,
        strides=config["strides"],
        padding=config["padding"],
        dilation=config["dilation"],
        lhs_dilation=config["lhs_dilation"],
        groups=groups,
    )
    assert error <= TOLERANCE


def test_check_grads_second_order():
    x, kernel, bias = _random((2, 6, 5, 4), 0), _random((3, 2, 2, 4), 1), _random((4,), 2)

    def f(x, kernel, bias):
        return ops.conv(x, kernel, bias, strides=(2, 1), padding=((1, 0), (-1, 1)), dilation=(1, 2), groups=2)

    check_grads(f, (x, kernel, bias), order=2, modes=["rev"])


def test_vmap_of_grad_gives_per_example_gradients():
    x, kernel = _random((3, 6, 6, 2), 0), _random((3, 3, 2, 4), 1)

    def loss(kernel, example):
        return jnp.sum(ops.conv(example[None], kernel, strides=2, padding="SAME") ** 2)

    per_example = jax.vmap(jax.grad(loss), in_axes=(None, 0))(kernel, x)
    looped = jnp.stack([jax.grad(loss)(kernel, example) for example in x])
    np.testing.assert_allclose(per_example, looped, rtol=1e-12, atol=1e-12)


def _loss(grad):
    def loss(kernel, x):
        return jnp.sum(jnp.tanh(ops.conv(x, kernel, strides=2, padding="SAME", groups=2, grad=grad)))

    return loss


def test_jit_and_scan_compose():
    x, kernel = _random((2, 7, 7, 4), 0), _random((3, 3, 2, 4), 1)

    def train(grad):
        def step(kernel, _):
            return kernel - 0.1 * jax.grad(_loss(grad))(kernel, x), None

        return jax.jit(lambda kernel: lax.scan(step, kernel, None, length=3)[0])(kernel)

    np.testing.assert_allclose(train("custom"), train("autodiff"), rtol=1e-12, atol=1e-12)


def test_hessian_matches_autodiff():
    x, kernel = _random((1, 5, 5, 2), 0), _random((2, 2, 1, 2), 1)
    custom = jax.hessian(_loss("custom"))(kernel, x)
    autodiff = jax.hessian(_loss("autodiff"))(kernel, x)
    np.testing.assert_allclose(custom, autodiff, rtol=1e-12, atol=1e-12)


def test_precision_reaches_the_backward_convolutions():
    x, kernel = _random((2, 6, 6, 2), 0), _random((3, 3, 2, 4), 1)
    highest = lax.Precision.HIGHEST

    def loss(x, kernel):
        return jnp.sum(ops.conv(x, kernel, strides=2, precision=highest))

    jaxpr = jax.make_jaxpr(jax.grad(loss, argnums=(0, 1)))(x, kernel)
    convs = [e for e in jaxpr.eqns if e.primitive.name == "conv_general_dilated"]
    assert len(convs) == 3
    assert all(e.params["precision"] == (highest, highest) for e in convs)


def test_backward_convolutions_are_plain_channels_last_convolutions():
    """No ``batch_group_count`` or permuted layouts: the form that stays fast inside ``lax.scan``."""
    x, kernel = _random((2, 6, 6, 4), 0), _random((3, 3, 2, 4), 1)
    jaxpr = jax.make_jaxpr(jax.grad(lambda k: jnp.sum(ops.conv(x, k, strides=2, groups=2))))(kernel)
    convs = [e for e in jaxpr.eqns if e.primitive.name == "conv_general_dilated"]
    assert len(convs) >= 2
    forward_layout = convs[0].params["dimension_numbers"]
    for conv in convs:
        assert conv.params["batch_group_count"] == 1
        assert conv.params["dimension_numbers"] == forward_layout


@pytest.mark.parametrize(
    "dtype, preferred",
    [(jnp.float32, None), (jnp.bfloat16, None), (jnp.bfloat16, jnp.float32)],
)
def test_cotangents_have_the_primal_dtype(dtype, preferred):
    x, kernel, bias = (
        _random((2, 5, 5, 2), 0, dtype),
        _random((3, 3, 2, 4), 1, dtype),
        _random((4,), 2, dtype),
    )
    y, vjp = jax.vjp(
        lambda *a: ops.conv(*a, padding="SAME", preferred_element_type=preferred), x, kernel, bias
    )
    assert y.dtype == (preferred or dtype)
    cotangents = vjp(jnp.ones_like(y))
    assert [c.dtype for c in cotangents] == [dtype] * 3


@pytest.mark.parametrize(
    "strides, padding, dilation, output_padding, groups",
    [
        (1, "VALID", 1, 0, 1),
        (2, "SAME", 1, 0, 1),
        (2, "VALID", 1, 1, 2),
        (3, ((1, 2), (0, 1)), 1, (2, 1), 1),
        ((2, 3), "SAME", (2, 1), (1, 0), 2),
        (2, ((1, 1), (1, 1)), 2, 1, 4),
    ],
)
def test_conv_transpose_vjp_equals_autodiff(strides, padding, dilation, output_padding, groups):
    x, kernel, bias = _random((2, 4, 5, 4), 0), _random((3, 2, 4 // groups, 4), 1), _random((4,), 2)
    kwargs = {
        "strides": strides,
        "padding": padding,
        "dilation": dilation,
        "output_padding": output_padding,
        "groups": groups,
    }
    assert _max_error(x, kernel, bias, op=ops.conv_transpose, **kwargs) <= TOLERANCE


@pytest.mark.parametrize(
    "x_shape, ksize, strides, dilation, extra, groups",
    [
        ((2, 5, 4), (3,), 2, 1, {"padding": "SAME", "output_padding": 1}, 2),
        ((2, 4, 5, 4), (3, 2), (3, 2), 1, {"padding": "SAME", "output_padding": (2, 1)}, 1),
        ((2, 4, 5, 4), (4, 3), 2, (2, 1), {"padding": "SAME", "output_shape": (7, 9)}, 2),
        ((2, 4, 3, 4), (3, 3), (2, 3), 1, {"padding": ((1, 2), (0, 1)), "output_shape": (7, 9)}, 4),
        ((1, 3, 4, 3, 4), (2, 3, 2), (2, 1, 2), 1, {"padding": "SAME", "output_padding": (1, 0, 1)}, 2),
    ],
)
def test_conv_transpose_same_output_padding_and_output_shape_vjp_equals_autodiff(
    x_shape, ksize, strides, dilation, extra, groups
):
    x, kernel, bias = _random(x_shape, 0), _random((*ksize, 4 // groups, 4), 1), _random((4,), 2)
    kwargs = {"strides": strides, "dilation": dilation, "groups": groups, **extra}
    assert _max_error(x, kernel, bias, op=ops.conv_transpose, **kwargs) <= TOLERANCE


@pytest.mark.parametrize("ksize, padding", [((2, 2), "VALID"), ((3, 3), "SAME"), ((3, 2), ((1, 2), (0, 1)))])
def test_a_transposed_convolution_kernel_gradient_convolves_the_undilated_input(ksize, padding):
    """The weight gradient of a stride-2 transposed convolution takes ``X`` as the kernel, dilated
    by the stride (``rhs_dilation``), never the zero-filled input dilation, and equals autodiff's."""
    x, kernel = _random((3, 4, 5, 4), 0), _random((*ksize, 2, 6), 1)

    def loss(grad):
        return lambda kernel: jnp.sum(jnp.sin(ops.conv_transpose(x, kernel, strides=2, padding=padding,
                                                                 groups=2, grad=grad)))  # fmt: skip

    jaxpr = jax.make_jaxpr(jax.grad(loss("custom")))(kernel)
    forward, *backward = [e.params for e in jaxpr.eqns if e.primitive.name == "conv_general_dilated"]
    assert forward["lhs_dilation"] == (2, 2)
    assert [p["lhs_dilation"] for p in backward] == [(1, 1)] * 2  # input and kernel gradients
    assert backward[-1]["rhs_dilation"] == (2, 2)
    np.testing.assert_allclose(jax.grad(loss("custom"))(kernel), jax.grad(loss("autodiff"))(kernel),
                               rtol=TOLERANCE, atol=TOLERANCE)  # fmt: skip


@pytest.mark.parametrize("batch", [0, 16, 32, 48, 40])
@pytest.mark.parametrize(
    "options",
    [
        {"padding": "SAME"},
        {"strides": 2, "padding": "VALID", "dilation": 2},
        {"strides": (2, 1), "padding": ((1, 0), (2, 1)), "groups": 2},
        {"padding": ((-1, 1), (1, -1)), "lhs_dilation": 2},
    ],
)
def test_the_kernel_gradient_in_batch_chunks_equals_autodiff(batch, options):
    """On CPU a batch that splits into chunks of 16 rows (32 and 48, not 0, 16 or 40) sums one
    weight-gradient convolution per chunk; the result is the whole batch's."""
    from funcnn.ops.conv import KERNEL_GRAD_ROWS

    assert KERNEL_GRAD_ROWS == 16
    groups = options.get("groups", 1)
    x, kernel = _random((batch, 7, 6, 4), 0), _random((3, 3, 4 // groups, 6), 1)

    def loss(grad):
        return lambda x, kernel: jnp.sum(jnp.sin(ops.conv(x, kernel, grad=grad, **options)))

    custom = jax.grad(loss("custom"), argnums=(0, 1))(x, kernel)
    autodiff = jax.grad(loss("autodiff"), argnums=(0, 1))(x, kernel)
    for got, want in zip(custom, autodiff, strict=True):
        np.testing.assert_allclose(got, want, rtol=TOLERANCE, atol=TOLERANCE)
