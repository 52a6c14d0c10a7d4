"""Adaptive pooling layers: shapes from ``init`` (stax's agreement check), the dtype policy, the
errors at construction, ``init`` and trace time, and the docstring examples."""

import doctest
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import funcnn as fn
import funcnn.layers.adaptive_pool
import funcnn.ops.adaptive_pool
from funcnn.core import LayerConfigError
from funcnn.layers.adaptive_pool import AdaptiveAvgPool, AdaptiveMaxPool
from tests.layers.test_shape_agreement import check_shape_agreement

KEY = jax.random.key(0)
LAYERS = {"AdaptiveAvgPool": AdaptiveAvgPool, "AdaptiveMaxPool": AdaptiveMaxPool}


def _lit(*parts):
    """A regex for a message that starts with ``parts[0]`` and contains the later parts, in order."""
    return "^" + ".*".join(re.escape(part) for part in parts)


@pytest.mark.parametrize("name", sorted(LAYERS))
@pytest.mark.parametrize(
    "spatial, output_size, expected",
    [
        ((9,), 3, (3,)),
        ((5,), 8, (8,)),
        ((28, 28), 7, (7, 7)),
        ((28, 28), (5, None), (5, 28)),
        ((3, 4), (6, 9), (6, 9)),
        ((6, 5, 4), (1, None, 3), (1, 5, 3)),
        ((2, 3, 4), 5, (5, 5, 5)),
    ],
)
def test_init_predicts_the_output_shape(name, spatial, output_size, expected):
    out_shape = check_shape_agreement(LAYERS[name](output_size), (-1, *spatial, 3))
    assert out_shape == (-1, *expected, 3)


@settings(max_examples=10)
@given(rank=st.integers(1, 3), data=st.data())
def test_shape_agreement_property(rank, data):
    spatial = tuple(data.draw(st.integers(1, 9)) for _ in range(rank))
    output_size = data.draw(
        st.one_of(st.integers(1, 9), st.tuples(*[st.one_of(st.none(), st.integers(1, 9))] * rank))
    )
    for layer in LAYERS.values():
        check_shape_agreement(layer(output_size), (-1, *spatial, 2))


def test_a_model_ends_in_a_fixed_size_whatever_the_image_size():
    """The reason for adaptive pooling: the classifier head sees the same shape for any input size."""
    model = fn.serial(fn.Conv(4, 3, padding="SAME"), AdaptiveAvgPool((2, 3)), fn.Flatten(), fn.Dense(5))
    _, params, state = model.init(KEY, (-1, 11, 13, 1))
    for side in (11, 16, 23):
        y, _ = model.apply(params, state, jnp.ones((2, side, side + 2, 1)))
        assert y.shape == (2, 5)


def test_summary_lists_the_layers_with_their_output_shapes():
    table = fn.shapes.summary(fn.serial(AdaptiveMaxPool(4), AdaptiveAvgPool((None, 1))), (-1, 10, 9, 2))
    assert "AdaptiveMaxPool" in table and "AdaptiveAvgPool" in table
    assert "(-1, 4, 4, 2)" in table and "(-1, 4, 1, 2)" in table


# --- dtype policy --------------------------------------------------------------------


def test_average_of_uint8_is_computed_in_floating_point():
    """200 + 200 would wrap around in uint8; the mean must be 200."""
    y, _ = AdaptiveAvgPool(3).apply((), (), jnp.full((1, 7, 5, 1), 200, jnp.uint8))
    assert y.dtype == jnp.float32
    np.testing.assert_array_equal(y, jnp.full(y.shape, 200.0))


def test_max_of_integers_is_exact_in_floating_point():
    x = jnp.arange(15, dtype=jnp.int32).reshape(1, 15, 1)
    y, _ = AdaptiveMaxPool(4).apply((), (), x)  # windows end at 4, 8, 12, 15
    np.testing.assert_array_equal(y[0, :, 0], [3.0, 7.0, 11.0, 14.0])


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_the_dtype_argument_sets_the_computation_dtype(name):
    y, _ = LAYERS[name](2, dtype=jnp.bfloat16).apply((), (), jnp.ones((1, 5, 5, 1), jnp.float32))
    assert y.dtype == jnp.bfloat16


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_autodiff_and_custom_layers_agree(name):
    x = jax.random.normal(KEY, (2, 7, 6, 3))
    grads = [
        jax.grad(lambda x, g=grad: jnp.sum(LAYERS[name]((3, 4), grad=g).apply((), (), x)[0] ** 2))(x)
        for grad in ("custom", "autodiff")
    ]
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-6, atol=1e-6)


# --- errors ---------------------------------------------------------------------------

KIND = "a positive integer or 1, 2 or 3 entries each a positive integer or None"


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: AdaptiveAvgPool(0), _lit("AdaptiveAvgPool: argument `output_size` must be a positive integer, got 0 (int)")),
        (lambda: AdaptiveMaxPool(-3), _lit("AdaptiveMaxPool: argument `output_size` must be a positive integer, got -3 (int)")),
        (lambda: AdaptiveAvgPool(7.0), _lit(f"AdaptiveAvgPool: argument `output_size` must be {KIND}, got 7.0 (float)")),
        (lambda: AdaptiveMaxPool(True), _lit(f"AdaptiveMaxPool: argument `output_size` must be {KIND}, got True (bool)")),
        (lambda: AdaptiveAvgPool("7"), _lit(f"AdaptiveAvgPool: argument `output_size` must be {KIND}, got '7' (str)")),
        (lambda: AdaptiveAvgPool(None), _lit(f"AdaptiveAvgPool: argument `output_size` must be {KIND}, got None (NoneType)")),
        (lambda: AdaptiveMaxPool((7, 0)), _lit(f"AdaptiveMaxPool: argument `output_size` must be {KIND}, got (7, 0)")),
        (lambda: AdaptiveMaxPool((7, 7.5)), _lit(f"AdaptiveMaxPool: argument `output_size` must be {KIND}, got (7, 7.5)")),
        (lambda: AdaptiveAvgPool((2, 2, 2, 2)), _lit(f"AdaptiveAvgPool: argument `output_size` must be {KIND}, got (2, 2, 2, 2)")),
        (lambda: AdaptiveAvgPool(()), _lit(f"AdaptiveAvgPool: argument `output_size` must be {KIND}, got ()")),
        (lambda: AdaptiveAvgPool(2, dtype="int32"), _lit("AdaptiveAvgPool: argument `dtype` must be a floating-point dtype", "got 'int32' (str)")),
        (lambda: AdaptiveMaxPool(2, grad="auto"), _lit("AdaptiveMaxPool: argument `grad` must be one of ('custom', 'custom_vjp', 'autodiff'), got 'auto'")),
        (lambda: AdaptiveMaxPool(2).init(KEY, (-1, 4)), _lit("AdaptiveMaxPool: argument `x` must have rank 3, 4 or 5, but has shape (-1, 4) (rank 2)")),
        (lambda: AdaptiveAvgPool((7, 7)).init(KEY, (-1, 28, 1)), _lit("AdaptiveAvgPool: argument `output_size` has 2 entries (7, 7) but the input has 1 spatial dimensions (input shape (-1, 28, 1))")),
        (lambda: AdaptiveMaxPool((2, None, 2)).init(KEY, (-1, 4, 4, 1)), _lit("AdaptiveMaxPool: argument `output_size` has 3 entries (2, None, 2) but the input has 2 spatial dimensions (input shape (-1, 4, 4, 1))")),
        (lambda: AdaptiveAvgPool((7, 7)).apply((), (), jnp.ones((2, 28, 1))), _lit("AdaptiveAvgPool: argument `output_size` has 2 entries (7, 7) but the input has 1 spatial dimensions (input shape (2, 28, 1))")),
        (lambda: jax.jit(AdaptiveMaxPool((7,)).apply).lower((), (), jax.ShapeDtypeStruct((2, 8, 8, 1), jnp.float32)), _lit("AdaptiveMaxPool: argument `output_size` has 1 entries (7,) but the input has 2 spatial dimensions (input shape (2, 8, 8, 1))")),
        (lambda: AdaptiveAvgPool(2).apply((), (), jnp.ones((2, 0, 4, 1))), _lit("AdaptiveAvgPool: argument `x` has an empty spatial axis: shape (2, 0, 4, 1)")),
        (lambda: AdaptiveMaxPool(2).apply((), (), jnp.ones((1, 4, 4, 1), jnp.complex64)), _lit("AdaptiveMaxPool: argument `x` has complex dtype complex64 (shape (1, 4, 4, 1))")),
        (lambda: AdaptiveAvgPool(2).apply({"w": jnp.ones(1)}, (), jnp.ones((1, 4, 1))), _lit("AdaptiveAvgPool: argument `params` must be empty")),
    ],
)  # fmt: skip
def test_bad_arguments_and_inputs_raise_layer_config_error(make, match):
    with pytest.raises(LayerConfigError, match=match):
        make()


@pytest.mark.parametrize("module", [funcnn.layers.adaptive_pool, funcnn.ops.adaptive_pool])
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
