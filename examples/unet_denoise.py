"""A small U-Net that removes noise from Fashion-MNIST pictures, trained with a short optax loop.

    python examples/unet_denoise.py --epochs 3 --out unet.png     # noisy / denoised / clean pictures
    python examples/unet_denoise.py --epochs 1 --limit 1024

The encoder halves the picture twice with ``MaxPool`` (28 -> 14 -> 7); the
decoder doubles it back, once with a learned ``ConvTranspose`` and once with
a parameter-free ``Upsample``, and each level of the decoder sees the
encoder's feature maps of its size through a skip connection
(``fan_out``, ``parallel`` and ``fan_in_concat``). The data comes from
Debian's ``dataset-fashion-mnist`` (or ``$FUNCNN_DATA``).
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import optax

import funcnn as fn
from funcnn.data import load_fashion_mnist

NOISE = 0.3
"""Standard deviation of the Gaussian noise added to pictures scaled to [0, 1]."""


def conv_block(features: int) -> fn.Layer:
    """Two 3x3 SAME convolutions with ReLU: the size is kept, the channels become ``features``."""
    return fn.serial(
        fn.Conv(features, 3, padding="SAME"), fn.Relu(), fn.Conv(features, 3, padding="SAME"), fn.Relu()
    )


def with_skip(inner: fn.Layer) -> fn.Layer:
    """``x -> concat(x, inner(x))`` along the channels: the U-Net's skip connection."""
    return fn.serial(fn.fan_out(2), fn.parallel(fn.serial(), inner), fn.fan_in_concat())


def unet(width: int = 16) -> fn.Layer:
    """``(N, 28, 28, 1) -> (N, 28, 28, 1)``: two levels down, two up, a skip at each level."""
    bottom = fn.serial(fn.MaxPool(2), conv_block(4 * width), fn.ConvTranspose(2 * width, 2, strides=2))
    middle = fn.serial(fn.MaxPool(2), conv_block(2 * width), with_skip(bottom), conv_block(2 * width))
    return fn.serial(
        conv_block(width),
        with_skip(fn.serial(middle, fn.Upsample(2, "bilinear"))),
        conv_block(width),
        fn.Conv(1, 1),
    )


def add_noise(key: jax.Array, clean: jax.Array) -> jax.Array:
    return clean + NOISE * jax.random.normal(key, clean.shape, clean.dtype)


def main(
    epochs: int = 3, limit: int | None = 12_000, batch_size: int = 64, out: str | None = None, seed: int = 0
) -> tuple[float, float]:
    """Train; return the test mean squared error of the noisy pictures and of the denoised ones."""
    x_train, _, x_test, _ = load_fashion_mnist()
    x_train = jnp.asarray(x_train[:limit, ..., None], jnp.float32) / 255.0
    x_test = jnp.asarray(x_test[:1024, ..., None], jnp.float32) / 255.0
    model = unet()
    _, params, state = model.init(jax.random.key(seed), (-1, 28, 28, 1))
    optimizer = optax.adam(2e-3)
    opt_state = optimizer.init(params)

    def loss_fn(params, noisy, clean):
        denoised, _ = model.apply(params, state, noisy)
        return jnp.mean(optax.l2_loss(denoised, clean)) * 2  # l2_loss is half the squared error

    @jax.jit
    def step(params, opt_state, key, clean):
        loss, grads = jax.value_and_grad(loss_fn)(params, add_noise(key, clean), clean)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    key = jax.random.key(seed + 1)
    batches = len(x_train) // batch_size
    for epoch in range(1, epochs + 1):
        key, shuffle_key = jax.random.split(key)
        order = np.asarray(jax.random.permutation(shuffle_key, len(x_train)))
        losses = []
        for b in range(batches):
            key, noise_key = jax.random.split(key)
            clean = x_train[order[b * batch_size : (b + 1) * batch_size]]
            params, opt_state, loss = step(params, opt_state, noise_key, clean)
            losses.append(loss)
        print(f"epoch {epoch}  train mse {float(jnp.mean(jnp.stack(losses))):.4f}")

    noisy = add_noise(jax.random.key(seed + 2), x_test)
    denoised = jax.jit(lambda p, x: model.apply(p, state, x)[0])(params, noisy)
    noisy_mse = float(jnp.mean((noisy - x_test) ** 2))
    denoised_mse = float(jnp.mean((denoised - x_test) ** 2))
    print(f"test mse: noisy {noisy_mse:.4f}, denoised {denoised_mse:.4f}")
    if out is not None:
        draw(np.asarray(noisy[:8]), np.asarray(denoised[:8]), np.asarray(x_test[:8]), out)
        print(f"wrote {out}")
    return noisy_mse, denoised_mse


def draw(noisy: np.ndarray, denoised: np.ndarray, clean: np.ndarray, out: str) -> None:
    """Three rows of pictures: the U-Net's inputs, its outputs and the targets."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(len(clean) * 1.1, 3.6))
    axes = fig.subplots(3, len(clean))
    rows = [("noisy input", noisy), ("U-Net output", denoised), ("clean target", clean)]
    for row, (label, images) in enumerate(rows):
        for col, image in enumerate(images):
            ax = axes[row, col]
            ax.imshow(np.clip(image[..., 0], 0, 1), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[row, 0].set_ylabel(label, fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--limit", type=int, default=12_000, help="train on the first N images only")
    parser.add_argument("--out", help="draw noisy inputs, outputs and clean targets into this PNG")
    args = parser.parse_args()
    main(args.epochs, args.limit, out=args.out)
