"""An epoch as one scan or as a loop of jitted steps: the same numbers."""

import jax
import numpy as np
import optax

from funcnn.data import batch_indices
from funcnn.train import DEFAULT_LOSS, init_train_state, make_scan_epoch, run_loop_epoch
from funcnn.train.step import build_train_step


def test_scan_and_loop_epochs_agree(model, train_data):
    optimizer = optax.sgd(0.1)
    images, labels = train_data
    images = images[..., None]
    step = build_train_step(model, DEFAULT_LOSS, optimizer)
    idx = batch_indices(0, 0, len(images), 16)
    fresh = lambda: init_train_state(model, optimizer, jax.random.key(0), (-1, 6, 6, 1))  # noqa: E731
    scanned_state, scanned = make_scan_epoch(step)(fresh(), images, labels, idx)
    seen = []
    looped_state, looped = run_loop_epoch(jax.jit(step), fresh(), images, labels, idx, lambda i, m: seen.append(i))
    assert seen == list(range(len(idx)))
    np.testing.assert_allclose(np.asarray(scanned.loss), looped.loss, rtol=1e-5)
    np.testing.assert_allclose(scanned_state.params["w"], looped_state.params["w"], rtol=1e-5, atol=1e-6)
