"""Train on your own data: a ``.npz`` file with ``x_train``, ``y_train``, ``x_test`` and ``y_test``.

Images are ``(N, H, W)`` or ``(N, H, W, C)``: ``uint8`` is scaled by 1/255,
floating point is used as it is; labels are integers from 0. The same file
trains from the command line: ``funcnn train --data my_data.npz --out runs/mine``.
Here the data is 32x32 RGB pictures of two kinds (stripes across or down),
and the model is ResNet-20, which takes any image size.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import optax

import funcnn as fn
from funcnn.data import load_dataset
from funcnn.train import fit


def stripes(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` noisy 32x32x3 images of horizontal (label 0) or vertical (label 1) stripes."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    wave = (np.sin(np.arange(32) * np.pi / 4) > 0).astype(np.float32)
    images = np.where(labels[:, None, None] == 0, wave[None, :, None], wave[None, None, :])
    images = images[..., None] * rng.uniform(0.5, 1.0, (n, 1, 1, 3)) + rng.normal(0, 0.3, (n, 32, 32, 3))
    return (np.clip(images, 0, 1) * 255).astype(np.uint8), labels.astype(np.uint8)


def main(folder: str | None = None, epochs: int = 2) -> float:
    """Write the ``.npz``, load it back as ``funcnn train --data`` does, train; return the test accuracy."""
    folder = Path(folder or tempfile.mkdtemp())
    (x_train, y_train), (x_test, y_test) = stripes(512, 0), stripes(128, 1)
    path = folder / "my_data.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    x_train, y_train, x_test, y_test = load_dataset(path)  # checks the keys, shapes and labels
    model = fn.models.resnet20(num_classes=2)
    result = fit(
        model, (x_train, y_train), (x_test, y_test), optimizer=optax.adam(1e-3), epochs=epochs, batch_size=64
    )
    accuracy = result.history[-1]["test_accuracy"]
    print(f"{path}: {len(x_train)} training images {x_train.shape[1:]}, test accuracy {accuracy:.2%}")
    return accuracy


if __name__ == "__main__":
    main()
