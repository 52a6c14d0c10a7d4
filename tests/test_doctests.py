"""The ``>>>`` examples in docstrings run and print what they claim."""

import doctest
import importlib

import pytest

import funcnn.combinators
import funcnn.core
import funcnn.distributed
import funcnn.filters
import funcnn.labels
import funcnn.layers.adaptive_pool
import funcnn.layers.conv
import funcnn.layers.resize
import funcnn.shapes
import funcnn.taps
import funcnn.testing

EMA = importlib.import_module("funcnn.train.ema")
EPOCH = importlib.import_module("funcnn.train.epoch")  # funcnn.train.epoch the module, not a name
RESIZE = importlib.import_module("funcnn.ops.resize")  # the module, not the op funcnn.ops.resize
ADAPTIVE = importlib.import_module("funcnn.ops.adaptive_pool")


@pytest.mark.parametrize(
    "module",
    [
        funcnn.core, funcnn.shapes, funcnn.combinators, funcnn.filters, funcnn.layers.conv, funcnn.testing, EPOCH,
        funcnn.distributed, funcnn.layers.resize, RESIZE, funcnn.layers.adaptive_pool, ADAPTIVE, funcnn.labels,
        funcnn.taps, EMA,
    ],
)
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
