"""Forward and reverse mode through the hand-written rules (``funcnn.ops._rules``), op by op.

For every op with a hand-written rule, in float64: ``jax.jvp``, ``jax.jacfwd``,
``jax.hessian``, ``jax.linearize`` (and calling its result) and ``vmap`` of
``jvp`` with ``grad="custom"`` equal JAX's autodiff to 1e-12, and a rule that
counts its calls at trace time proves which rule ran: forward mode runs the
hand-written JVP only, reverse mode the hand-written VJP only, under ``jit``,
``jax.checkpoint`` (with and without a policy), ``lax.scan``, ``vmap`` and
second order.
"""

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcnn as fn
from funcnn.ops import _rules
from funcnn.ops._rules import RULES


@pytest.fixture(scope="module", autouse=True)
def double(x64):
    """float64: forward mode is compared with autodiff to 1e-12."""


def _normal(seed, shape):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape))


def _unpool(grad, x):
    y, indices = fn.ops.max_pool(x, 2, return_indices=True)
    return fn.ops.max_unpool(y * 1.5, indices, 2, grad=grad)


# name: (the op as f(grad, *operands), operand shapes); the rule each exercises is RULES[name].
CASES = {
    "conv": (lambda g, x, k, b: fn.ops.conv(x, k, b, strides=2, padding="SAME", grad=g), [(2, 5, 5, 2), (3, 3, 2, 3), (3,)]),
    "conv dilated groups": (lambda g, x, k: fn.ops.conv(x, k, padding=((1, 0), (2, 1)), dilation=2, groups=2, grad=g), [(2, 6, 6, 4), (2, 2, 2, 4)]),
    "conv 1-D": (lambda g, x, k: fn.ops.conv(x, k, strides=2, grad=g), [(2, 9, 2), (3, 2, 3)]),
    "conv 3-D": (lambda g, x, k: fn.ops.conv(x, k, padding="SAME", grad=g), [(1, 4, 4, 3, 2), (2, 2, 2, 2, 2)]),
    "conv_transpose": (lambda g, x, k: fn.ops.conv_transpose(x, k, strides=2, padding="SAME", grad=g), [(2, 3, 3, 2), (3, 3, 2, 3)]),
    "dense": (lambda g, x, k, b: fn.ops.dense(x, k, b, grad=g), [(3, 4), (4, 2), (2,)]),
    "max_pool": (lambda g, x: fn.ops.max_pool(x, 2, grad=g), [(2, 4, 6, 2)]),
    "max_pool overlapping padded": (lambda g, x: fn.ops.max_pool(x, 3, 1, "SAME", grad=g), [(2, 5, 4, 2)]),
    "max_pool dilated ceil": (lambda g, x: fn.ops.max_pool(x, 2, 2, dilation=2, ceil_mode=True, grad=g), [(1, 7, 6, 2)]),
    "max_pool 3-D": (lambda g, x: fn.ops.max_pool(x, 2, grad=g), [(1, 4, 4, 4, 2)]),
    "avg_pool": (lambda g, x: fn.ops.avg_pool(x, 3, 2, "SAME", count_include_pad=False, grad=g), [(2, 5, 5, 2)]),
    "adaptive_avg_pool": (lambda g, x: fn.ops.adaptive_avg_pool(x, (3, 2), grad=g), [(2, 7, 5, 2)]),
    "adaptive_max_pool": (lambda g, x: fn.ops.adaptive_max_pool(x, (3, 2), grad=g), [(2, 7, 5, 2)]),
    "standardize": (lambda g, x: fn.ops.standardize(x, axis=(1, 2), grad=g), [(2, 3, 4, 2)]),
    "resize": (lambda g, x: fn.ops.resize(x, (5, 7), "bicubic", grad=g), [(1, 3, 4, 2)]),
    "upsample nearest": (lambda g, x: fn.ops.upsample(x, 2, grad=g), [(1, 3, 2, 2)]),
    "max_unpool": (_unpool, [(2, 4, 4, 2)]),
    "prelu": (lambda g, x, a: fn.ops.prelu(x, a, grad=g), [(3, 4), (4,)]),
    "softmax": (lambda g, x: fn.ops.softmax(x, axis=0, grad=g), [(3, 4)]),
    "log_softmax": (lambda g, x: fn.ops.log_softmax(x, grad=g), [(3, 4)]),
    **{
        name: (lambda g, x, name=name: getattr(fn.ops, name)(x, grad=g), [(3, 4)])
        for name in ("relu", "relu6", "sigmoid", "tanh", "log_sigmoid", "leaky_relu", "elu", "selu", "celu",
                     "gelu", "silu", "softplus", "softsign", "hard_sigmoid", "hard_silu")
    },
}  # fmt: skip


def _rule(case):
    name = case.split()[0]
    return RULES[{"conv_transpose": "conv", "upsample": "resize"}.get(name, name)]


def _operands(case, seed=0):
    return tuple(_normal(seed + i, shape) * (3.0 if "relu" in case or "hard" in case else 1.0)
                 for i, shape in enumerate(CASES[case][1]))  # fmt: skip


def _functions(case):
    op = CASES[case][0]
    return (lambda *a: op("custom", *a)), (lambda *a: op("autodiff", *a))


def _close(actual, expected):
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(e), rtol=1e-12, atol=1e-12)


def test_every_rule_has_a_case():
    assert {_rule(case).name for case in CASES} == set(RULES)


@pytest.mark.parametrize("case", sorted(CASES))
def test_forward_mode_equals_autodiff_and_runs_the_hand_written_jvp(case, rule_calls):
    custom, autodiff = _functions(case)
    primals, tangents = _operands(case), _operands(case, seed=10)
    argnums = tuple(range(len(primals)))
    with rule_calls(_rule(case)) as calls:
        _close(jax.jvp(custom, primals, tangents), jax.jvp(autodiff, primals, tangents))
        _close(jax.jacfwd(custom, argnums)(*primals), jax.jacfwd(autodiff, argnums)(*primals))
        y, linear = jax.linearize(custom, *primals)
        expected_y, expected_t = jax.jvp(autodiff, primals, tangents)
        _close((y, linear(*tangents), jax.jit(linear)(*tangents)), (expected_y, expected_t, expected_t))
        many = tuple(jnp.stack([t, 2 * t, -t]) for t in tangents)
        pushed = jax.vmap(lambda *t: jax.jvp(custom, primals, t)[1])(*many)
        _close(pushed, jax.vmap(lambda *t: jax.jvp(autodiff, primals, t)[1])(*many))
    assert calls["jvp"] >= 4 and calls["bwd"] == 0, calls


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_hessian_equals_autodiff(case, rule_calls):
    custom, autodiff = _functions(case)
    primals = _operands(case)
    argnums = tuple(range(len(primals)))

    def scalar(f):
        return lambda *a: jnp.sum(jnp.sin(f(*a)))

    with rule_calls(_rule(case)) as calls:
        _close(
            jax.hessian(scalar(custom), argnums)(*primals), jax.hessian(scalar(autodiff), argnums)(*primals)
        )
    assert calls["bwd"] >= 1, calls  # jacfwd over jacrev: the inner reverse pass is the hand-written VJP


REVERSE = {
    "grad": lambda f: jax.grad(f),
    "jit": lambda f: jax.jit(jax.grad(f)),
    "checkpoint": lambda f: jax.grad(jax.checkpoint(f)),
    "checkpoint, nothing saved": lambda f: jax.grad(
        jax.checkpoint(f, policy=jax.checkpoint_policies.nothing_saveable)
    ),
    "checkpoint, dots saved": lambda f: jax.jit(
        jax.grad(jax.checkpoint(f, policy=jax.checkpoint_policies.dots_with_no_batch_dims_saveable))
    ),
    "scan": lambda f: jax.grad(lambda t: jax.lax.scan(lambda c, s: (c + f(t * s), None), 0.0, jnp.arange(1.0, 3.0))[0]),
    "vmap inside": lambda f: jax.grad(lambda t: jnp.sum(jax.vmap(lambda s: f(t * s))(jnp.arange(1.0, 3.0)))),
    "vmap outside": lambda f: lambda t: jax.vmap(jax.grad(lambda t, s: f(t * s)), (None, 0))(t, jnp.arange(1.0, 3.0)),
    "grad of grad": lambda f: jax.grad(lambda t: jax.grad(f)(t) ** 2),
    "jvp of grad": lambda f: lambda t: jax.jvp(jax.grad(f), (t,), (1.0,)),
}  # fmt: skip


@pytest.mark.parametrize("transformation", sorted(REVERSE))
@pytest.mark.parametrize(
    "case", ["conv", "dense", "max_pool overlapping padded", "standardize", "softmax", "gelu"]
)
def test_reverse_mode_runs_the_hand_written_vjp(case, transformation, rule_calls):
    """``t -> sum(sin(op(t x)))`` differentiated in ``t``: each transformation of reverse mode calls
    the hand-written VJP (and, but for forward over reverse, not the JVP)."""
    custom, autodiff = _functions(case)
    primals = _operands(case)

    def along(f):
        return lambda t: jnp.sum(jnp.sin(f(*(t * p for p in primals))))

    with rule_calls(_rule(case)) as calls:
        _close(REVERSE[transformation](along(custom))(1.3), REVERSE[transformation](along(autodiff))(1.3))
    assert calls["bwd"] >= 1, calls
    if transformation != "jvp of grad":
        assert calls["jvp"] == 0, calls


def test_the_custom_vjp_mechanism_runs_the_same_vjp(rule_calls):
    rule = RULES["conv"]
    x, k, b = _operands("conv")
    f = jax.grad(lambda k, g: jnp.sum(jnp.sin(fn.ops.conv(x, k, b, strides=2, padding="SAME", grad=g))))
    with rule_calls(rule) as calls:
        _close(f(k, "custom_vjp"), f(k, "custom"))
    assert calls == {"jvp": 0, "bwd": 2}


def test_without_the_primitive_extension_points_custom_is_the_custom_vjp_mechanism(monkeypatch):
    monkeypatch.setattr(_rules, "PRIMITIVES", False)
    x, k, b = _operands("conv")
    with pytest.raises(TypeError, match="can't apply forward-mode autodiff .* grad='autodiff'"):
        jax.jvp(lambda x: fn.ops.conv(x, k, b), (x,), (x,))
    np.testing.assert_allclose(
        jax.grad(lambda k: fn.ops.conv(x, k, b).sum())(k),
        jax.grad(lambda k: fn.ops.conv(x, k, b, grad="autodiff").sum())(k),
        rtol=1e-12,
    )


def test_two_rules_of_one_name_are_refused():
    with pytest.raises(ValueError, match="two ops' hand-written rules are both named 'conv'"):
        _rules.HandWritten("conv", *(lambda: None,) * 4)


COMPILED = {
    **CASES,
    "max_pool 3-D overlapping": (lambda g, x: fn.ops.max_pool(x, 3, 2, "SAME", grad=g), [(2, 7, 6, 5, 3)]),
    "max_pool 3-D dilated": (lambda g, x: fn.ops.max_pool(x, 2, 1, dilation=2, grad=g), [(1, 6, 6, 6, 2)]),
    "avg_pool 3-D": (lambda g, x: fn.ops.avg_pool(x, 2, grad=g), [(2, 6, 4, 4, 3)]),
    "adaptive_max_pool 3-D": (lambda g, x: fn.ops.adaptive_max_pool(x, (2, 3, 2), grad=g), [(1, 5, 7, 4, 2)]),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(COMPILED))
def test_compiled_rules_equal_autodiff_under_the_default_cpu_compiler_flags(case):
    """The CPU compiler guard: each op's jitted VJP and JVP, in float32 (what XLA:CPU's YNNPACK
    fusions, on by default in jaxlib 0.10, take), equal autodiff's. The 3-D max pool's rules build
    rank-8 to rank-10 intermediates, where YNNPACK's fusions have had crash reports; the README
    names the flag that turns the fusions off."""
    assert "ynn" not in os.environ.get("XLA_FLAGS", ""), "this guard runs under jaxlib's default XLA flags"
    op, shapes = COMPILED[case]
    with jax.enable_x64(False):
        primals = tuple(
            jnp.asarray(np.random.default_rng(i).normal(size=s), jnp.float32) for i, s in enumerate(shapes)
        )
        cotangent = jnp.cos(op("autodiff", *primals))
        results = {}
        for grad in ("custom", "autodiff"):
            f = functools.partial(op, grad)
            vjp = jax.jit(lambda *a, f=f: jax.vjp(f, *a)[1](cotangent))(*primals)
            jvp = jax.jit(lambda *a, f=f: jax.jvp(f, a, a)[1])(*primals)
            results[grad] = (vjp, jvp)
    for got, expected in zip(
        jax.tree.leaves(results["custom"]), jax.tree.leaves(results["autodiff"]), strict=True
    ):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
