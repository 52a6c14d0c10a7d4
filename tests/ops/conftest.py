"""Fixtures of the op tests: counting which hand-written rule ran."""

import contextlib

import jax
import pytest


@pytest.fixture
def rule_calls():
    """``rule_calls(rule)``: a context in which the calls of ``rule``'s JVP and VJP (a
    :class:`funcnn.ops._rules.HandWritten`) are counted while JAX traces (its caches cleared first)."""

    @contextlib.contextmanager
    def counting(rule):
        calls = {"jvp": 0, "bwd": 0}
        originals = {"jvp": rule.jvp, "bwd": rule.bwd}

        def counted(kind):
            def call(*args):
                calls[kind] += 1
                return originals[kind](*args)

            return call

        def rebuild():
            """Drop the built mechanisms (``functools.cached_property``): ``custom_vjp`` captures
            ``bwd`` when it is built, so one built by an earlier test would not count."""
            for mechanism in ("custom_vjp", "primitive"):
                rule.__dict__.pop(mechanism, None)

        jax.clear_caches()
        for kind in calls:
            object.__setattr__(rule, kind, counted(kind))
        rebuild()
        try:
            yield calls
        finally:
            for kind, original in originals.items():
                object.__setattr__(rule, kind, original)
            rebuild()

    return counting
