"""``evaluate``: its checks on the data, before any batch runs."""

import re

import jax
import numpy as np
import pytest

import funcnn as fn
from funcnn.train import evaluate


@pytest.fixture(scope="module")
def initialised(model):
    _, params, state = model.init(jax.random.key(0), (-1, 6, 6, 1))
    return params, state


@pytest.mark.parametrize(
    "make_labels, message",
    [
        (lambda labels: labels[:10], r"evaluate: argument `images, labels` has images of shape \(50, 6, 6\) but labels of shape \(10,\)"),
        (lambda labels: labels + 3, r"evaluate: argument `labels` labels must lie in \[0, 3\) for a model with 3 outputs, got labels from 3 to 5"),
        (lambda labels: labels.astype(np.float64), r"evaluate: argument `images, labels` labels must be integers, got dtype float64"),
    ],
)
def test_bad_labels_are_refused(model, initialised, test_data, make_labels, message):
    images, labels = test_data
    with pytest.raises(fn.LayerConfigError, match=message):
        evaluate(model, *initialised, images, make_labels(labels))


@pytest.mark.parametrize("batch_size, got", [(0, "0 (int)"), (2.5, "2.5 (float)"), (True, "True (bool)")])
def test_batch_size_must_be_a_positive_int(model, initialised, test_data, batch_size, got):
    with pytest.raises(
        fn.LayerConfigError, match=rf"^evaluate: argument `batch_size` must be a positive integer, got {re.escape(got)}$"
    ):
        evaluate(model, *initialised, *test_data, batch_size=batch_size)


def test_accuracy_of_labels_in_range(model, initialised, test_data):
    result = evaluate(model, *initialised, *test_data)
    assert 0.0 <= result["accuracy"] <= 1.0 and np.isfinite(result["loss"])
