"""Train the Fashion-MNIST CNN with ``fit`` and report the test accuracy after each epoch.

    python examples/train_fashion_mnist.py --epochs 10          # about 92% test accuracy
    python examples/train_fashion_mnist.py --epochs 1 --limit 2048

The data comes from Debian's ``dataset-fashion-mnist`` (or ``$FUNCNN_DATA``).
Set ``XLA_FLAGS=--xla_force_host_platform_device_count=2`` (one CPU device per
core) before running it to split each batch over both cores, as
``funcnn train`` does by itself.
"""

from __future__ import annotations

import argparse

import optax

import funcnn as fn
from funcnn.data import load_fashion_mnist
from funcnn.train import fit


def main(epochs: int = 10, limit: int | None = None, batch_size: int = 128) -> float:
    """Train for ``epochs`` on the first ``limit`` training images; return the last test accuracy."""
    x_train, y_train, x_test, y_test = load_fashion_mnist()
    x_train, y_train = x_train[:limit], y_train[:limit]
    steps = epochs * (len(x_train) // batch_size)
    optimizer = optax.adam(optax.cosine_decay_schedule(1e-3, steps))
    result = fit(
        fn.models.fashion_mnist_cnn(),
        (x_train, y_train),
        (x_test, y_test),
        optimizer=optimizer,
        epochs=epochs,
        batch_size=batch_size,
    )
    for record in result.history:
        print(
            f"epoch {record['epoch']:2d}  train loss {record['train_loss']:.4f}  "
            f"test accuracy {record['test_accuracy']:.2%}  {record['images_per_second']:,.0f} images/s"
        )
    return result.history[-1]["test_accuracy"]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--limit", type=int, help="train on the first N images only")
    args = parser.parse_args()
    main(args.epochs, args.limit)
