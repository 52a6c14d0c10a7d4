"""Apply the classic filters (Sobel, Gaussian, sharpen, Laplacian, box blur) to an image.

The image is the first Fashion-MNIST test picture (a synthetic square when
the dataset is not installed); each filter is a ``FixedConv`` layer, a
convolution whose kernel is not trained. With ``--out filters.png`` it also
draws the responses (``funcnn filters --out filters.png`` draws the same).
"""

from __future__ import annotations

import argparse

import jax.numpy as jnp
import numpy as np

import funcnn as fn
from funcnn.data import DataNotFoundError, load_fashion_mnist

KERNELS = {
    "sobel(0)": fn.filters.sobel(0),
    "sobel(1)": fn.filters.sobel(1),
    "gaussian(5, 1.0)": fn.filters.gaussian(5, 1.0),
    "sharpen()": fn.filters.sharpen(),
    "laplacian()": fn.filters.laplacian(),
    "box_blur(3)": fn.filters.box_blur(3),
}


def picture() -> tuple[jnp.ndarray, str]:
    """A ``(1, 28, 28, 1)`` image in [0, 1] and its name."""
    try:
        _, _, x_test, _ = load_fashion_mnist()
        return jnp.asarray(x_test[:1, :, :, None] / 255.0, jnp.float32), "Fashion-MNIST test image 0"
    except DataNotFoundError:
        return jnp.zeros((1, 28, 28, 1)).at[:, 8:20, 8:20, :].set(1.0), "a synthetic square"


def main(out: str | None = None) -> dict[str, np.ndarray]:
    """Filter the picture with each kernel; print each response's range; draw them to ``out``."""
    image, name = picture()
    print(f"filters on {name}:")
    responses = {}
    for kernel_name, kernel in KERNELS.items():
        y, _ = fn.FixedConv(kernel, padding="SAME").apply((), (), image)  # SAME: 28x28 in, 28x28 out
        responses[kernel_name] = np.asarray(y[0, :, :, 0])
        print(f"{kernel_name:>17}: min {float(y.min()):+.3f} max {float(y.max()):+.3f}")
    if out:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        panels = {"image": np.asarray(image[0, :, :, 0]), **responses}
        figure, axes = plt.subplots(1, len(panels), figsize=(2.2 * len(panels), 2.6))
        for axis, (title, panel) in zip(axes, panels.items(), strict=True):
            axis.imshow(panel, cmap="gray")
            axis.set_title(title, fontsize=9)
            axis.axis("off")
        figure.savefig(out, dpi=100, bbox_inches="tight")
        print(f"wrote {out}")
    return responses


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="also draw the responses into this PNG")
    main(parser.parse_args().out)
