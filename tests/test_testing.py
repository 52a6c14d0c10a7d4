"""``funcnn.testing``: the checks pass on correct rules and catch wrong ones, with a readable report."""

import doctest
import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import funcnn.testing
from funcnn import ops
from funcnn.testing import Tolerance, check_adjoint, check_jvp, check_jvp_vjp, check_vjp, compare

DIMENSION_NUMBERS = ("NHWC", "HWIO", "NHWC")


def _random(shape, seed):
    return jax.random.normal(jax.random.key(seed), shape, jnp.float32)


X = _random((2, 7, 7, 3), 0)
KERNEL = _random((3, 3, 3, 4), 1)
BIAS = _random((4,), 2)


# --- correct rules pass --------------------------------------------------------------


def conv_custom(x, kernel, bias, strides=2, padding="SAME"):
    return ops.conv(x, kernel, bias, strides=strides, padding=padding)


def conv_autodiff(x, kernel, bias, strides=2, padding="SAME"):
    return ops.conv(x, kernel, bias, strides=strides, padding=padding, grad="autodiff")


def test_conv_rule_passes_against_autodiff_finite_differences_and_the_adjoint_identity():
    check_vjp(conv_custom, X, KERNEL, BIAS, reference=conv_autodiff)
    check_vjp(conv_custom, X, KERNEL, BIAS, num_cotangents=1)
    check_adjoint(conv_custom, X, KERNEL, BIAS, num_cotangents=1)


def test_dense_rule_passes_with_pytree_and_none_arguments():
    def dense(params, x):
        return ops.dense(x, params["kernel"], params.get("bias"))

    def dense_autodiff(params, x):
        return ops.dense(x, params["kernel"], params.get("bias"), grad="autodiff")

    params = {"kernel": _random((5, 3), 0), "bias": _random((3,), 1)}
    x = _random((4, 5), 2)
    check_vjp(dense, params, x, reference=dense_autodiff)
    check_vjp(dense, params, x)
    check_vjp(lambda x, kernel, bias: ops.dense(x, kernel, bias), x, params["kernel"], None)


def test_max_pool_rule_passes_on_distinct_values():
    x = jnp.asarray(np.random.default_rng(0).permutation(2 * 6 * 6 * 3).reshape(2, 6, 6, 3) / 100.0)
    tiled = functools.partial(ops.max_pool, window=2)
    check_vjp(tiled, x, reference=functools.partial(tiled, grad="autodiff"))
    check_vjp(lambda x: ops.max_pool(x, 3, 1, "SAME"), x)


def test_avg_pool_rule_passes_the_adjoint_identity():
    for count_include_pad in (True, False):
        check_adjoint(lambda x, c=count_include_pad: ops.avg_pool(x, 3, 2, "SAME", count_include_pad=c), X)


def test_integer_arguments_are_held_fixed():
    def scale(x, n):
        return x * n.astype(x.dtype)

    check_vjp(scale, jnp.arange(3.0), jnp.arange(3), reference=scale)
    check_vjp(scale, jnp.arange(3.0), jnp.arange(3))
    check_adjoint(scale, jnp.arange(3.0), jnp.arange(3))


# --- wrong rules are caught ------------------------------------------------------------


def _conv_with_input_grad(input_grad):
    """A stride-``s`` VALID 2-D convolution whose custom VJP computes dX by ``input_grad(g, kernel, x)``
    and dK correctly, as the cross-correlation of X with dL/dY dilated by the stride."""

    @functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
    def conv(stride, x, kernel):
        return lax.conv_general_dilated(
            x, kernel, (stride,) * 2, "VALID", dimension_numbers=DIMENSION_NUMBERS
        )

    def fwd(stride, x, kernel):
        return conv(stride, x, kernel), (x, kernel)

    def bwd(stride, saved, g):
        x, kernel = saved
        f, m = kernel.shape[0], g.shape[1]
        crop = [(0, 0)] + [(0, x.shape[1] - f - stride * (m - 1))] * 2 + [(0, 0)]
        x_reached = lax.pad(x, jnp.zeros((), x.dtype), [(lo, -hi, 0) for lo, hi in crop])
        dkernel = lax.conv_general_dilated(
            x_reached.transpose(3, 1, 2, 0),
            g.transpose(1, 2, 0, 3),
            (1, 1),
            "VALID",
            rhs_dilation=(stride,) * 2,
            dimension_numbers=DIMENSION_NUMBERS,
        ).transpose(1, 2, 0, 3)
        return input_grad(stride, g, kernel, x), dkernel

    conv.defvjp(fwd, bwd)
    return conv


def _full_correlation(stride, g, kernel, low, high):
    """dL/dY dilated by the stride, padded by (low, high), correlated with ``kernel`` (in/out swapped)."""
    return lax.conv_general_dilated(
        g,
        jnp.swapaxes(kernel, 2, 3),
        (1, 1),
        [(low, high)] * 2,
        lhs_dilation=(stride,) * 2,
        dimension_numbers=DIMENSION_NUMBERS,
    )


def correct_input_grad(stride, g, kernel, x):
    f = kernel.shape[0]
    r = x.shape[1] - f - stride * (g.shape[1] - 1)
    return _full_correlation(stride, g, kernel[::-1, ::-1], f - 1, f - 1 + r)


def unrotated_input_grad(stride, g, kernel, x):
    """Bug: the kernel is not rotated by 180 degrees."""
    f = kernel.shape[0]
    r = x.shape[1] - f - stride * (g.shape[1] - 1)
    return _full_correlation(stride, g, kernel, f - 1, f - 1 + r)


def misplaced_remainder_input_grad(stride, g, kernel, x):
    """Bug: the inputs past the last window (the remainder r) are padded before, not after."""
    f = kernel.shape[0]
    r = x.shape[1] - f - stride * (g.shape[1] - 1)
    return _full_correlation(stride, g, kernel[::-1, ::-1], f - 1 + r, f - 1)


def _reference_conv(stride):
    def conv(x, kernel):
        return ops.conv(x, kernel, strides=stride, grad="autodiff")

    return conv


def test_the_test_convolution_is_right_when_its_rule_is():
    conv = _conv_with_input_grad(correct_input_grad)
    for stride in (1, 2):
        check_vjp(functools.partial(conv, stride), X, KERNEL, reference=_reference_conv(stride))


@pytest.mark.parametrize("check", ["reference", "finite differences", "adjoint"])
def test_catches_an_unrotated_kernel_in_the_input_gradient(check):
    conv = _conv_with_input_grad(unrotated_input_grad)

    def f(x, kernel):
        return conv(1, x, kernel)

    with pytest.raises(AssertionError) as raised:
        if check == "reference":
            check_vjp(f, X, KERNEL, reference=_reference_conv(1))
        elif check == "finite differences":
            check_vjp(f, X, KERNEL)
        else:
            check_adjoint(f, X, KERNEL)
    report = str(raised.value)
    assert "argument 0 `x`" in report
    assert "argument 1" not in report  # the kernel's rule is right
    assert "max abs error" in report
    assert "worst at index (" in report


def test_catches_a_strided_rule_that_misplaces_the_remainder():
    conv = _conv_with_input_grad(misplaced_remainder_input_grad)

    def f(x, kernel):
        return conv(2, x, kernel)

    # 6 inputs, kernel 3, stride 2: windows at 0 and 2, so r = 1 input is never reached.
    x = X[:, :6, :6]
    with pytest.raises(
        AssertionError, match=r"(?s)argument 0 `x` \(shape \(2, 6, 6, 3\), float32\).*max abs"
    ):
        check_vjp(f, x, KERNEL, reference=_reference_conv(2))
    with pytest.raises(
        AssertionError, match=r"argument 0 `x`, cotangent 0: <vjp\(u\), v> = .* but <u, J v> ="
    ):
        check_vjp(f, x, KERNEL)
    # Stride 1 has no remainder: the same rule is right there.
    check_vjp(lambda x, kernel: conv(1, x, kernel), x, KERNEL, reference=_reference_conv(1))


@jax.custom_vjp
def max_pool_last_maximum(x):
    """2x2 max pooling whose rule sends the gradient to the LAST maximum of each window (a bug)."""
    return ops.max_pool(x, 2)


def _windows_last(x):
    n, h, w, c = x.shape
    return x.reshape(n, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 5, 2, 4).reshape(n, h // 2, w // 2, c, 4)


def _max_pool_last_bwd(x, g):
    windows = _windows_last(x)[..., ::-1]
    last = jax.nn.one_hot(jnp.argmax(windows, axis=-1), 4, dtype=g.dtype)[..., ::-1]
    n, h, w, c = x.shape
    dx = (last * g[..., None]).reshape(n, h // 2, w // 2, c, 2, 2).transpose(0, 1, 4, 2, 5, 3)
    return (dx.reshape(x.shape),)


max_pool_last_maximum.defvjp(lambda x: (ops.max_pool(x, 2), x), _max_pool_last_bwd)


def test_catches_a_max_pool_with_the_wrong_tie_rule():
    """After a ReLU, windows of zeros tie; the first maximum in scan order must take the gradient."""
    x = jax.nn.relu(_random((2, 8, 8, 3), 3) - 0.5)

    def reference(x):
        return ops.max_pool(x, 2, grad="autodiff")

    check_vjp(lambda x: ops.max_pool(x, 2), x, reference=reference)
    with pytest.raises(AssertionError, match=r"argument 0 `x`.*cotangent 0") as raised:
        check_vjp(max_pool_last_maximum, x, reference=reference)
    # The worst entry is a tied zero that one rule gives the gradient and the other does not.
    assert re.search(r"vjp (0, reference \S+|\S+, reference 0)$", str(raised.value), re.MULTILINE)


# --- the report ------------------------------------------------------------------------


def test_report_names_pytree_paths_values_and_tolerances():
    def scaled(params, x):
        return params["w"] * x + params["b"]

    @jax.custom_vjp
    def wrong(params, x):
        return scaled(params, x)

    def wrong_bwd(saved, g):
        params, x = saved
        return {"w": 2.0 * g * x, "b": g}, g * params["w"]  # dL/dw is doubled

    wrong.defvjp(lambda params, x: (scaled(params, x), (params, x)), wrong_bwd)
    params = {"w": jnp.array([1.0, 2.0, 3.0]), "b": jnp.zeros(3)}
    x = jnp.array([1.0, -1.0, 0.5])
    with pytest.raises(AssertionError) as raised:
        check_vjp(wrong, params, x, reference=scaled, atol=1e-6, rtol=0)
    report = str(raised.value)
    assert report.startswith("check_vjp: `wrong` disagrees with the VJP of `scaled`:")
    assert "argument 0 `params`['w'] (shape (3,), float32), cotangent 0:" in report
    assert "['b']" not in report and "argument 1" not in report
    assert "(atol 1e-06, rtol 0)" in report
    assert "max rel error 1 " in report  # doubled: off by 100%
    assert "worst at index (" in report
    assert ": vjp " in report and ", reference " in report


def test_report_localizes_the_worst_entry_in_finite_difference_mode():
    @jax.custom_vjp
    def square(x):
        return x * x

    square.defvjp(lambda x: (x * x, x), lambda x, g: (2 * x * g * jnp.array([1.0, 1.0, 1.5, 1.0]),))
    with pytest.raises(AssertionError) as raised:
        check_vjp(square, jnp.array([1.0, 2.0, 3.0, 4.0]))
    report = str(raised.value)
    assert "central finite differences (float64, eps 1e-06)" in report
    assert "argument 0 `x` (shape (4,), float64) entry by entry:" in report
    assert "worst at index (2,)" in report


def test_reports_output_mismatch_and_structure_mismatch():
    with pytest.raises(AssertionError, match=r"output \(shape \(3,\), float32\):\n    max abs error 1"):
        check_vjp(lambda x: x + 1, jnp.zeros(3), reference=lambda x: x)
    with pytest.raises(AssertionError, match="the output structures differ"):
        check_vjp(lambda x: (x, x), jnp.zeros(3), reference=lambda x: x)


def test_compare_points_at_the_worst_entry_and_treats_nan_as_a_mismatch():
    mismatch = compare([1.0, 2.0, 3.0], [1.0, 2.5, 3.0], Tolerance(1e-6, 0.0))
    assert mismatch.index == (1,) and mismatch.got == 2.0 and mismatch.expected == 2.5
    assert mismatch.max_abs == 0.5 and mismatch.max_rel == 0.2
    assert compare([1.0, 2.0], [1.0, 2.0 + 1e-9], Tolerance(1e-6, 0.0)) is None
    assert compare([[0.0, np.nan]], [[0.0, 0.0]], Tolerance(1.0, 1.0)).index == (0, 1)


@pytest.mark.parametrize("got, expected", [([1.0], [[1.0, 1.0]]), ([1.0, 1.0], [1.0]), (1.0, [1.0])])
def test_compare_refuses_arrays_of_different_shapes_instead_of_broadcasting(got, expected):
    shapes = f"`got` has shape {np.shape(got)} but `expected` has shape {np.shape(expected)}"
    with pytest.raises(ValueError, match=f"^compare: {re.escape(shapes)}$"):
        compare(got, expected, Tolerance(1e-6, 0.0))


def test_docstring_examples():
    result = doctest.testmod(funcnn.testing)
    assert result.attempted > 0
    assert result.failed == 0


# --- forward mode: check_jvp and check_jvp_vjp ----------------------------------------


@pytest.mark.parametrize(
    "op, args",
    [
        (conv_custom, (X, KERNEL, BIAS)),
        (lambda x: ops.max_pool(x, 3, 2, "SAME"), (X,)),
        (lambda x: ops.gelu(x), (X,)),
        (lambda x: ops.standardize(x, axis=(1, 2)), (X,)),
    ],
)
def test_hand_written_jvps_pass_every_forward_mode_check(op, args):
    check_jvp(op, *args, num_tangents=1)
    check_jvp_vjp(op, *args, num_cotangents=1)


def test_check_jvp_passes_against_a_reference():
    check_jvp(conv_custom, X, KERNEL, BIAS, reference=conv_autodiff)


@pytest.fixture
def scaled_rules():
    """``y = x^3`` with the right VJP and a JVP 1.5x too large, as funcnn's rules are written."""
    from funcnn.ops import _rules

    rules = _rules.HandWritten(
        "test_cube",
        lambda _, x: x**3,
        lambda _, x: (x**3, x),
        lambda _, x, g: (3 * x**2 * g,),
        lambda _, x, t: 4.5 * x**2 * t[0],
    )
    yield rules
    del _rules.RULES["test_cube"]


def test_a_wrong_jvp_is_caught_by_both_checks_with_a_report(scaled_rules):
    def cube(x):
        return scaled_rules.primitive(None, x)

    x = jnp.linspace(0.5, 1.5, 4)
    with pytest.raises(AssertionError, match=r"(?s)check_jvp: `cube` disagrees with the JVP of `<lambda>`:\n"
                                             r"  output \(shape \(4,\), float32\) along argument 0 `x`, tangent 0:\n"
                                             r"    max abs error .* jvp .* reference"):  # fmt: skip
        check_jvp(cube, x, reference=lambda x: x**3)
    with pytest.raises(AssertionError, match=r"(?s)check_jvp: `cube` disagrees with central finite differences .*\n"
                                             r".* jvp .*, central differences"):  # fmt: skip
        check_jvp(cube, x)
    with pytest.raises(AssertionError, match=r"check_jvp_vjp: `cube` fails <J\^T u, v> = <u, J v> with J v by "
                                             r"jax.jvp:\n  argument 0 `x`, cotangent 0: <vjp\(u\), v> = .* by jvp"):  # fmt: skip
        check_jvp_vjp(cube, x)
    check_vjp(cube, x, reference=lambda x: x**3)  # the VJP alone is right
