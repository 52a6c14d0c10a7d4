"""Build ResNet-20, print its layer tree and run it on a batch of CIFAR-sized and Fashion-MNIST-sized images.

ResNet-20 (He et al., 2016) ends in a global average pool, so one model takes
32x32x3 and 28x28x1 images alike; only the first convolution's kernel
depends on the input channels.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

import funcnn as fn


def main() -> int:
    """Print the summary for 32x32x3 inputs and run both input sizes; return the parameter count."""
    model = fn.models.resnet20()
    print(fn.summary(model, (-1, 32, 32, 3)))
    for shape in [(8, 32, 32, 3), (8, 28, 28, 1)]:
        _, params, state = model.init(jax.random.key(0), (-1, *shape[1:]))
        logits, _ = jax.jit(model.apply)(params, state, jnp.zeros(shape))
        print(f"input {shape} -> logits {logits.shape}, {fn.count_params(params):,} parameters")
    _, params, _ = model.init(jax.random.key(0), (-1, 32, 32, 3))
    return fn.count_params(params)


if __name__ == "__main__":
    main()
