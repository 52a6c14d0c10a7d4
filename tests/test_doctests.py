"""The ``>>>`` examples in docstrings run and print what they claim."""

import doctest

import pytest

import funcnn.combinators
import funcnn.core
import funcnn.filters
import funcnn.layers.conv
import funcnn.shapes
import funcnn.testing


@pytest.mark.parametrize(
    "module",
    [funcnn.core, funcnn.shapes, funcnn.combinators, funcnn.filters, funcnn.layers.conv, funcnn.testing],
)
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
