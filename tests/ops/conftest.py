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

        jax.clear_caches()
        for kind in calls:
            object.__setattr__(rule, kind, counted(kind))
        try:
            yield calls
        finally:
            for kind, original in originals.items():
                object.__setattr__(rule, kind, original)

    return counting
