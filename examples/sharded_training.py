"""Train data-parallel over several devices: here 4 virtual CPU devices.

Each batch is split along the mesh's ``"data"`` axis, the parameters are
replicated, and ``jit`` inserts the gradient all-reduce. On a machine with
GPUs, drop the ``XLA_FLAGS`` line: ``data_mesh()`` takes every device. The
device count is fixed when JAX starts, so the flag comes before the import.
"""

from __future__ import annotations

import os

os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"

import jax  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import funcnn as fn  # noqa: E402
from funcnn.distributed import data_mesh  # noqa: E402
from funcnn.train import fit  # noqa: E402


def synthetic(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """28x28 images whose label is the brightest quadrant."""
    images = np.random.default_rng(seed).integers(0, 256, (n, 28, 28), dtype=np.uint8)
    quadrants = images.reshape(n, 2, 14, 2, 14).mean(axis=(2, 4)).reshape(n, 4)
    return images, quadrants.argmax(axis=1).astype(np.uint8)


def main(epochs: int = 2, shard_params: bool = False) -> list[float]:
    """Train the course's CNN on 4 devices; return the test accuracy after each epoch."""
    mesh = data_mesh()
    print(f"{jax.device_count()} devices, mesh {dict(mesh.shape)}")
    result = fit(
        fn.models.seed_cnn(num_classes=4),
        synthetic(1024, 0),
        synthetic(256, 1),
        optimizer=optax.adam(1e-3),
        epochs=epochs,
        batch_size=64,  # the global batch: 16 rows on each device
        mesh=mesh,
        shard_params=shard_params,  # True also splits the parameters and optimiser state
    )
    accuracies = [record["test_accuracy"] for record in result.history]
    for record in result.history:
        devices, accuracy = record["devices"], record["test_accuracy"]
        print(f"epoch {record['epoch']}  on {devices} devices  test accuracy {accuracy:.2%}")
    return accuracies


if __name__ == "__main__":
    main()
