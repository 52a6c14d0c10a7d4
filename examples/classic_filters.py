"""Apply the classic filters to a synthetic image with FixedConv layers."""

import jax.numpy as jnp

import funcnn as fn


def main() -> None:
    square = jnp.zeros((1, 12, 12, 1)).at[:, 3:9, 3:9, :].set(1.0)
    for name, kernel in {
        "sobel rows": fn.filters.sobel(0),
        "sobel columns": fn.filters.sobel(1),
        "gaussian 5, 1.0": fn.filters.gaussian(5, 1.0),
        "sharpen": fn.filters.sharpen(),
        "laplacian": fn.filters.laplacian(),
        "box blur 3": fn.filters.box_blur(3),
    }.items():
        y, _ = fn.FixedConv(kernel, padding="SAME").apply((), (), square)
        print(f"{name:>16}: min {float(y.min()):+.3f} max {float(y.max()):+.3f} mean {float(y.mean()):+.3f}")


if __name__ == "__main__":
    main()
