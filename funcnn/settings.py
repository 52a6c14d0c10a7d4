"""The command line's training settings and the names it offers, light: no JAX.

:mod:`funcnn.cli` builds its parser from these and :mod:`funcnn.commands`
runs with them; the name tuples are pinned to the library's by a test.
"""

from __future__ import annotations

from typing import Any

MODEL_NAMES = ("fashion_mnist_cnn", "seed_cnn", "lenet5", "small_resnet", "resnet20")
"""``funcnn.models.MODELS``'s names (pinned by a test), so the parser needs no JAX."""

OPTIMIZER_NAMES = ("adam", "sgd", "adamw")
"""``funcnn.train.OPTIMIZERS`` (pinned by a test)."""

PRECISION_NAMES = ("bf16", "fp32")
"""``funcnn.train.PRECISIONS``'s names (pinned by a test)."""

MODE_NAMES = ("auto", "scan", "loop")
"""``funcnn.train.MODES`` (pinned by a test)."""

TRAIN_DEFAULTS: dict[str, Any] = {
    "model": "fashion_mnist_cnn",
    "epochs": 10,
    "batch_size": 128,
    "optimizer": "adam",
    "lr": 1e-3,
    "schedule": "cosine",
    "seed": 0,
    "precision": "fp32",
    "augment": False,
    "limit": None,
    "num_classes": None,
}
"""The training settings; with ``--resume`` the checkpoint's settings replace these."""

SCHEDULES = ("cosine", "constant")


class UsageError(ValueError):
    """A bad combination of command-line arguments."""
