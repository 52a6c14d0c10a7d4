"""The shared checks: parsing at construction, resolution with shapes, the dtype policy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from funcnn import checks, shapes
from funcnn.core import LayerConfigError


@pytest.mark.parametrize("value, expected", [(3, 3), (np.int64(2), 2), ((1, 2), (1, 2)), ([3, np.int32(1)], (3, 1))])
def test_sizes_accept_python_and_numpy_integers(value, expected):
    assert checks.sizes("L", "kernel_size", value) == expected


@pytest.mark.parametrize(
    "value, match",
    [
        (3.0, r"L: argument `k` must be a positive integer or a sequence of them, got 3.0 \(float\)"),
        (True, r"L: argument `k` must be a positive integer or a sequence of them, got True \(bool\)"),
        (0, r"L: argument `k` must be a positive integer, got 0"),
        ((2, 0), r"L: argument `k` must be a positive integer or 1 or 2 or 3 of them, got \(2, 0\)"),
        ((1, 2, 3, 4), r"got \(1, 2, 3, 4\)"),
        ("3", r"got '3' \(str\)"),
    ],
)
def test_sizes_refuse_floats_bools_and_non_positive(value, match):
    with pytest.raises(LayerConfigError, match=match):
        checks.sizes("L", "k", value)


@pytest.mark.parametrize(
    "value, expected",
    [("same", "SAME"), ("VALID", "VALID"), (2, 2), ([1, (0, 2)], ((1, 1), (0, 2))), (((-1, 1),), ((-1, 1),))],
)
def test_padding_spec_forms(value, expected):
    assert checks.padding_spec("L", value) == expected


def test_padding_pairs_resolve_same_and_check_the_rank():
    assert shapes.padding_pairs("L", "SAME", (28, 28), (3, 3), (1, 1), (1, 1)) == ((1, 1), (1, 1))
    with pytest.raises(LayerConfigError, match=r"L: argument `padding` has 1 entries .* 2 spatial dimensions"):
        shapes.padding_pairs("L", ((1, 1),), (5, 5), (3, 3), (1, 1), (1, 1))


@pytest.mark.parametrize("value", [0.5, np.float32(0.5), jnp.asarray(0.5), 0, np.int64(0)])
def test_real_accepts_any_real_scalar(value):
    assert checks.real("L", "rate", value, low=0.0, high=1.0, high_open=True) == float(value)


def test_real_names_the_interval():
    with pytest.raises(LayerConfigError, match=r"L: argument `rate` must be in \[0, 1\), got 1"):
        checks.real("L", "rate", 1, low=0.0, high=1.0, high_open=True)
    with pytest.raises(LayerConfigError, match=r"L: argument `eps` must be > 0, got -1e-05"):
        checks.real("L", "eps", -1e-5, low=0.0, low_open=True)


@pytest.mark.parametrize(
    "value, match", [("0.5", r"must be a real number"), (float("nan"), r"must be a real number"), (True, r"must be a real number, got True \(bool\)")]
)
def test_real_refuses_strings_nan_and_bools(value, match):
    with pytest.raises(LayerConfigError, match=rf"L: argument `eps` {match}"):
        checks.real("L", "eps", value, low=0.0, low_open=True)


@pytest.mark.parametrize(
    "x_dtype, dtype, fallback, expected",
    [
        (jnp.int32, None, None, jnp.float32),
        (jnp.uint8, None, jnp.bfloat16, jnp.bfloat16),
        (jnp.bool_, jnp.float16, None, jnp.float16),
        (jnp.bfloat16, None, jnp.float32, jnp.bfloat16),
        (jnp.float32, jnp.bfloat16, None, jnp.bfloat16),
    ],
)
def test_dtype_policy(x_dtype, dtype, fallback, expected):
    assert checks.input_array("L", jnp.ones((2,), x_dtype), dtype, fallback=fallback).dtype == expected


@pytest.mark.parametrize(
    "x, match",
    [
        (jnp.ones((2,), jnp.complex64), r"L: argument `x` has complex dtype complex64 \(shape \(2,\)\)"),
        (np.array(["a"]), r"L: argument `x` has non-numeric dtype <U1"),
        ([1.0, 2.0], r"L: argument `x` must be an array, got a list of 2 entries"),
        ("image", r"L: argument `x` must be an array, got 'image' \(str\)"),
    ],
)
def test_input_array_refuses_complex_text_and_sequences(x, match):
    with pytest.raises(LayerConfigError, match=match):
        checks.input_array("L", x)


def test_promote_operands_brings_integers_to_the_floating_dtype():
    x, k, b = checks.promote_operands("op", ("x", "kernel", "bias"), jnp.ones(2, jnp.uint8), jnp.ones(2), None)
    assert x.dtype == k.dtype == jnp.float32 and b is None


@pytest.mark.parametrize(
    "shape, inputs, match",
    [
        ((-1, 0, 3), "one", r"L: argument `input_shape` \(-1, 0, 3\) must have positive sizes"),
        ((2, -1), "one", r"only the batch \(the first entry\) may be -1"),
        ((-1, 2.0), "one", r"must be a non-empty tuple of ints"),
        (((-1, 2), (-1, 3)), "one", r"got the tuple of 2 shapes .* fan_in_sum\(\) or fan_in_concat\(\)"),
        ((-1, 2), "many", r"L: argument `input_shape` must be a tuple of shapes \(one per branch\)"),
    ],
)
def test_input_shape_checks(shape, inputs, match):
    with pytest.raises(LayerConfigError, match=match):
        checks.input_shape("L", shape, inputs=inputs)


def test_keys_typed_legacy_and_traced():
    checks.check_key("L", jax.random.key(0))
    checks.check_key("L", jax.random.PRNGKey(0))
    jax.jit(lambda k: checks.check_key("L", k))(jax.random.key(0))
    for bad in (0, jnp.zeros(2), jnp.zeros(3, jnp.uint32)):
        with pytest.raises(LayerConfigError, match=r"L: argument `key` must be a PRNG key"):
            checks.check_key("L", bad)


@pytest.mark.parametrize(
    "dtypes, expected",
    [
        ([jnp.float32, jnp.float32], jnp.float32),
        ([jnp.float16, jnp.float32], jnp.float32),
        ([jnp.float16, jnp.bfloat16], jnp.float32),
        ([jnp.bfloat16, jnp.int32], jnp.bfloat16),
        ([jnp.int32, jnp.uint8], jnp.float32),
        ([jnp.int32, jnp.int32], jnp.int32),
    ],
)
def test_common_dtype_holds_under_strict_promotion(dtypes, expected):
    assert checks.common_dtype(dtypes) == expected


def test_no_params_accepts_empty_trees_only():
    for empty in ((), None, {}, [], ((), ())):
        checks.no_params("L", empty)
    with pytest.raises(LayerConfigError, match=r"L: argument `params` must be empty \(the layer has no parameters"):
        checks.no_params("L", {"w": jnp.ones(1)})


def test_initialised_checks_signature_factory_shape_and_dtype():
    key = jax.random.key(0)
    assert checks.initialised("L", "kernel_init", jax.nn.initializers.ones, key, (2, 3), jnp.float32).shape == (2, 3)
    cases = [
        (lambda k: 0, r"L: argument `kernel_init` must be called as init\(key, shape, dtype\)"),
        (jax.nn.initializers.lecun_normal, r"L: argument `kernel_init` returned a function for shape \(2, 3\)"),
        (lambda k, s, d: jnp.ones((3, 2), d), r"L: argument `kernel_init` must return a floating array of shape \(2, 3\), got an array of shape \(3, 2\)"),
        (lambda k, s, d: jnp.ones(s, jnp.int32), r"must return a floating array of shape \(2, 3\), got an array of shape \(2, 3\) and dtype int32"),
    ]
    for init, match in cases:
        with pytest.raises(LayerConfigError, match=match):
            checks.initialised("L", "kernel_init", init, key, (2, 3), jnp.float32)


def test_float64_needs_x64():
    if jax.config.jax_enable_x64:
        pytest.skip("x64 is on in this process")
    with pytest.raises(LayerConfigError, match=r"L: argument `param_dtype` is float64, which JAX holds only with"):
        checks.dtype_or_none("L", "param_dtype", "float64")


def test_real_refuses_infinity_and_traced_values():
    with pytest.raises(LayerConfigError, match=r"L: argument `alpha` must be a real number, got inf"):
        checks.real("L", "alpha", float("inf"))
    with pytest.raises(LayerConfigError, match=r"L: argument `alpha` must be a static number \(Python or NumPy\), not a traced value"):
        jax.jit(lambda a: checks.real("L", "alpha", a))(1.0)
