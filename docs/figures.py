"""The course's pictures, computed by funcnn itself: ``python docs/figures.py docs/images``.

One function per figure; each takes the output folder and returns the path of
the PNG it wrote. :func:`main` writes them all. Nothing is drawn by hand: every
number and image on a figure comes out of ``funcnn`` (its ops, layers, filters
and shape formulas).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

import funcnn as fn  # noqa: E402
from funcnn import filters, ops, shapes  # noqa: E402

DPI = 110

# The worked example of docs/course/convolution.md (and its code block).
CONV_X = np.array([[1, 2, 0, 1], [0, 1, 3, 1], [2, 1, 0, 2], [1, 0, 1, 3]], np.float32)
CONV_K = np.array([[1, 0, -1], [2, 1, 0], [0, 1, 1]], np.float32)
CONV_B = 1.0

# The global pooling example of docs/course/pooling.md: max 9, mean 40/9.
POOL_X = np.array([[2, 4, 3], [1, 5, 6], [8, 2, 9]], np.float32)  # the seed's own matrix
# A 4x4 input pooled with 2x2 windows, stride 2.
POOL_X4 = np.array([[1, 3, 2, 1], [4, 6, 5, 0], [7, 2, 9, 8], [1, 0, 3, 4]], np.float32)

# The upsampling example of docs/course/upsampling.md.
UPSAMPLE_X = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]], np.float32)

FILTERS = {
    "Sobel x: sobel(1)": filters.sobel(1),
    "Sobel y: sobel(0)": filters.sobel(0),
    "Gaussian: gaussian(5, 1.0)": filters.gaussian(5, 1.0),
    "sharpen()": filters.sharpen(),
    "Laplacian: laplacian()": filters.laplacian(),
    "box blur: box_blur(3)": filters.box_blur(3),
}

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "ReLU": ops.relu,
    "sigmoid": ops.sigmoid,
    "tanh": ops.tanh,
    "leaky ReLU (slope 0.1)": lambda x: ops.leaky_relu(x, 0.1),
    "ELU (α = 1)": ops.elu,
    "GELU (tanh approximation)": ops.gelu,
}


def _save(fig: Figure, out_dir: Path, name: str) -> Path:
    path = out_dir / name
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    return path


def _signed(value: float) -> str:
    """``-1`` as ``(−1)``, so a product reads ``0·(−1)``."""
    return f"({value:g})".replace("-", "−") if value < 0 else f"{value:g}"


def _grid(ax, values: np.ndarray, *, title: str = "", fmt: str = "{:g}", highlight=None, color="tab:red"):
    """Draw a matrix as a grid of numbered cells; ``highlight`` is ``(row, col, height, width)``."""
    rows, cols = values.shape
    ax.imshow(np.zeros_like(values), cmap="Greys", vmin=0, vmax=1)
    for r in range(rows):
        for c in range(cols):
            ax.text(c, r, fmt.format(values[r, c]), ha="center", va="center", fontsize=11)
    for r in range(rows + 1):
        ax.axhline(r - 0.5, color="0.6", lw=0.8)
    for c in range(cols + 1):
        ax.axvline(c - 0.5, color="0.6", lw=0.8)
    if highlight is not None:
        r, c, h, w = highlight
        ax.add_patch(Rectangle((c - 0.5, r - 0.5), w, h, fill=True, alpha=0.25, color=color, lw=0))
        ax.add_patch(Rectangle((c - 0.5, r - 0.5), w, h, fill=False, ec=color, lw=2.5))
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=10)


def fashion_picture() -> tuple[np.ndarray, str]:
    """A 28x28 picture in ``[0, 1]``: Fashion-MNIST test image 0, or a synthetic one when it is missing."""
    from funcnn.data import DataNotFoundError, load_fashion_mnist
    from funcnn.data.fashion_mnist import CLASS_NAMES

    try:
        _, _, x_test, y_test = load_fashion_mnist()
    except DataNotFoundError:
        rows, cols = np.mgrid[0:28, 0:28]
        body = (np.abs(cols - 13.5) < 6) & (rows > 5) & (rows < 25)
        sleeves = (np.abs(cols - 13.5) < 11) & (rows > 5) & (rows < 12)
        collar = (rows - 5) ** 2 + (cols - 13.5) ** 2 < 9
        picture = 0.8 * (body | sleeves) * ~collar + 0.15 * np.sin(cols / 2.0) * body
        return np.clip(picture, 0, 1).astype(np.float32), "synthetic picture (Fashion-MNIST not installed)"
    return x_test[0].astype(np.float32) / 255, f"Fashion-MNIST test image 0 ({CLASS_NAMES[y_test[0]]})"


def filters_figure(out_dir: Path) -> Path:
    """The six classic filters applied with ``FixedConv`` (SAME padding) to one picture."""
    picture, source = fashion_picture()
    x = jnp.asarray(picture)[None, :, :, None]
    fig = Figure(figsize=(10, 5.4))
    axes = fig.subplots(2, 4)
    axes[0, 0].imshow(picture, cmap="gray")
    axes[0, 0].set_title("input", fontsize=10)
    filtered = {}
    for ax, (name, kernel) in zip(axes.ravel()[1:], FILTERS.items()):
        y, _ = fn.FixedConv(kernel, padding="SAME").apply((), (), x)
        filtered[name] = np.asarray(y[0, :, :, 0])
        ax.imshow(filtered[name], cmap="gray")
        ax.set_title(name, fontsize=10)
    edges = np.hypot(filtered["Sobel x: sobel(1)"], filtered["Sobel y: sobel(0)"])
    axes[1, 3].imshow(edges, cmap="gray")
    axes[1, 3].set_title("edge strength √(Sx² + Sy²)", fontsize=10)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"Classic filters on a {source}")
    return _save(fig, out_dir, "filters.png")


def convolution_steps_figure(out_dir: Path) -> Path:
    """Each output of the worked example: the window on the input, the kernel, the output cell."""
    y = ops.conv(
        jnp.asarray(CONV_X)[None, :, :, None], jnp.asarray(CONV_K)[:, :, None, None], jnp.asarray([CONV_B])
    )
    y = np.asarray(y[0, :, :, 0])
    f = CONV_K.shape[0]
    fig = Figure(figsize=(8.4, 12), layout="constrained")
    axes = fig.subplots(4, 3, gridspec_kw={"width_ratios": [4, 3, 2]})
    for row, (i, j) in enumerate(np.ndindex(*y.shape)):
        window = CONV_X[i : i + f, j : j + f]
        products = " + ".join(f"{a:g}·{_signed(k)}" for a, k in zip(window.ravel(), CONV_K.ravel()))
        _grid(axes[row, 0], CONV_X, title=f"X, window at ({i}, {j})", highlight=(i, j, f, f))
        _grid(axes[row, 1], CONV_K, title="K (not flipped)", color="tab:blue")
        _grid(
            axes[row, 2], y, title=f"Y = b + Σ X·K, b = {CONV_B:g}", highlight=(i, j, 1, 1), color="tab:green"
        )
        axes[row, 1].set_xlabel(f"{products}\n= {y[i, j] - CONV_B:g};  Y[{i},{j}] = {y[i, j]:g}", fontsize=8)
    fig.suptitle("Steps of a convolution: slide, multiply, sum, add the bias (ops.conv)")
    return _save(fig, out_dir, "convolution_steps.png")


def padding_stride_figure(out_dir: Path) -> Path:
    """A 5x5 input and a 3x3 kernel: VALID and SAME padding, stride 1 and 2, and the output sizes."""
    n, f = 5, 3
    fig = Figure(figsize=(11, 3.8), layout="constrained")
    axes = fig.subplots(1, 4)
    for ax, (padding, stride) in zip(axes, [("VALID", 1), ("SAME", 1), ("VALID", 2), ("SAME", 2)]):
        lo, hi = (0, 0) if padding == "VALID" else shapes.same_padding(n, f, stride)
        out = shapes.conv_output_size(n, f, stride, (lo, hi))
        y = ops.conv(jnp.ones((1, n, n, 1)), jnp.ones((f, f, 1, 1)), strides=stride, padding=padding)
        assert y.shape[1:3] == (out, out), (y.shape, out)
        size = n + lo + hi
        cells = np.zeros((size, size))
        cells[lo : lo + n, lo : lo + n] = 1
        ax.imshow(cells, cmap="Blues", vmin=0, vmax=2.5)
        for r in range(size + 1):
            ax.axhline(r - 0.5, color="0.5", lw=0.6)
            ax.axvline(r - 0.5, color="0.5", lw=0.6)
        ax.add_patch(Rectangle((-0.5, -0.5), f, f, fill=False, ec="tab:red", lw=2.5))
        for a in range(out):
            for b in range(out):
                ax.plot(stride * b + (f - 1) / 2, stride * a + (f - 1) / 2, "o", color="tab:red", ms=5)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"{padding}, s = {stride}, p = ({lo}, {hi})\noutput {out}×{out}", fontsize=10)
    fig.suptitle(
        f"n = {n}, f = {f}: blue = input, white = zero padding, red box = first window, "
        "dots = window centres (one per output)"
    )
    return _save(fig, out_dir, "padding_stride.png")


def activations_figure(out_dir: Path) -> Path:
    """The six activations of ``funcnn.ops`` and their derivatives through ``jax.vmap(jax.grad(f))``."""
    x = jnp.linspace(-4.0, 4.0, 401)
    fig = Figure(figsize=(10.5, 6))
    axes = fig.subplots(2, 3)
    for ax, (name, f) in zip(axes.ravel(), ACTIVATIONS.items()):
        ax.axhline(0, color="0.8", lw=0.8)
        ax.axvline(0, color="0.8", lw=0.8)
        ax.plot(x, f(x), label="f(x)", lw=2)
        ax.plot(x, jax.vmap(jax.grad(f))(x), label="f'(x)", lw=2, ls="--")
        ax.set_title(name, fontsize=10)
        ax.set_ylim(-1.5, 2.5)
        ax.grid(alpha=0.3)
    axes[0, 0].legend(loc="upper left")
    fig.suptitle(
        "Activations (funcnn.ops) and their derivatives (jax.vmap(jax.grad(f)), the hand-written VJPs)"
    )
    fig.tight_layout()
    return _save(fig, out_dir, "activations.png")


def pooling_figure(out_dir: Path) -> Path:
    """Global max and average pooling of the 3x3 example; 2x2 max and average pooling of a 4x4 input."""
    x3 = jnp.asarray(POOL_X)[None, :, :, None]
    global_max = float(ops.max_pool(x3, 3)[0, 0, 0, 0])
    global_avg = float(ops.avg_pool(x3, 3)[0, 0, 0, 0])
    x4 = jnp.asarray(POOL_X4)[None, :, :, None]
    max4 = np.asarray(ops.max_pool(x4, 2)[0, :, :, 0])
    avg4 = np.asarray(ops.avg_pool(x4, 2)[0, :, :, 0])
    fig = Figure(figsize=(12, 3.6), layout="constrained")
    axes = fig.subplots(1, 5, gridspec_kw={"width_ratios": [3, 1.4, 4, 2, 2]})
    _grid(axes[0], POOL_X, title="X (3×3), one 3×3 window", highlight=(0, 0, 3, 3))
    axes[1].axis("off")
    axes[1].text(0, 0.62, f"max = {global_max:g}", fontsize=12, transform=axes[1].transAxes)
    axes[1].text(0, 0.38, f"mean = {global_avg:.2f}", fontsize=12, transform=axes[1].transAxes)
    axes[1].text(0, 0.2, f"(= {POOL_X.sum():g}/9)", fontsize=10, transform=axes[1].transAxes)
    _grid(axes[2], POOL_X4, title="X (4×4), 2×2 windows, stride 2")
    for (r, c), color in zip(
        [(0, 0), (0, 2), (2, 0), (2, 2)], ["tab:red", "tab:blue", "tab:green", "tab:orange"]
    ):
        axes[2].add_patch(Rectangle((c - 0.5, r - 0.5), 2, 2, alpha=0.15, color=color, lw=0))
        axes[2].add_patch(Rectangle((c - 0.4, r - 0.4), 1.8, 1.8, fill=False, ec=color, lw=2.5))
        for ax in axes[3:]:
            ax.add_patch(Rectangle((c // 2 - 0.5, r // 2 - 0.5), 1, 1, alpha=0.15, color=color, lw=0))
    _grid(axes[3], max4, title="max_pool(X, 2)")
    _grid(axes[4], avg4, title="avg_pool(X, 2)")
    fig.suptitle("Pooling (funcnn.ops.max_pool, funcnn.ops.avg_pool)")
    return _save(fig, out_dir, "pooling.png")


def upsampling_figure(out_dir: Path) -> Path:
    """A 3x3 input made 6x6 three ways: nearest and bilinear upsampling, and a transposed convolution
    with a 3x3 kernel of ones and stride 2, whose overlapping windows give the checkerboard."""
    x = jnp.asarray(UPSAMPLE_X)[None, :, :, None]
    nearest = np.asarray(ops.upsample(x, 2, "nearest")[0, :, :, 0])
    bilinear = np.asarray(ops.upsample(x, 2, "bilinear")[0, :, :, 0])
    ones = jnp.ones((3, 3, 1, 1))
    overlap = np.asarray(ops.conv_transpose(jnp.ones_like(x), ones, strides=2, padding="SAME")[0, :, :, 0])
    fig = Figure(figsize=(14, 3.8), layout="constrained")
    axes = fig.subplots(1, 4, gridspec_kw={"width_ratios": [3, 6, 6, 6]})
    _grid(axes[0], UPSAMPLE_X, title="X (3×3)")
    _grid(axes[1], nearest, title="upsample(X, 2, 'nearest')")
    _grid(axes[2], bilinear, title="upsample(X, 2, 'bilinear')", fmt="{:.2f}")
    _grid(axes[3], overlap, title="conv_transpose(ones, 3×3 ones, stride 2)")
    fig.suptitle("Upsampling (funcnn.ops.upsample) and the overlaps of a transposed convolution")
    return _save(fig, out_dir, "upsampling.png")


def feature_maps_figure(out_dir: Path) -> Path:
    """What a trained first convolution sees: its eight 3x3 kernels and their ReLU feature maps on
    one picture, read out with ``fn.features`` (one epoch on 6,000 Fashion-MNIST images)."""
    import optax

    from funcnn.data import DataNotFoundError, load_fashion_mnist
    from funcnn.train import fit

    picture, source = fashion_picture()
    model = fn.serial(fn.Conv(8, 3, padding="SAME"), fn.Relu(), fn.MaxPool(2), fn.Flatten(), fn.Dense(10))
    try:
        x_train, y_train, _, _ = load_fashion_mnist()
        state = fit(model, (x_train[:6000], y_train[:6000]), optimizer=optax.adam(3e-3), epochs=1,
                    batch_size=100, seed=0).state  # fmt: skip
        params, model_state, trained = state.params, state.model_state, "after one epoch on 6,000 images"
    except DataNotFoundError:
        _, params, model_state = model.init(jax.random.key(0), (-1, 28, 28, 1))
        trained = "untrained (Fashion-MNIST not installed)"
    x = jnp.asarray(picture)[None, :, :, None]
    maps = fn.features(model, params, model_state, x, names="serial/1:Relu")["serial/1:Relu"][0]
    kernels = np.asarray(params[0]["kernel"][:, :, 0, :])
    fig = Figure(figsize=(12, 3.6), layout="constrained")
    axes = fig.subplots(2, 9)
    axes[0, 0].imshow(picture, cmap="gray")
    axes[0, 0].set_title("input", fontsize=9)
    axes[1, 0].axis("off")
    limit = float(np.abs(kernels).max())
    for k in range(8):
        axes[0, k + 1].imshow(kernels[:, :, k], cmap="RdBu_r", vmin=-limit, vmax=limit)
        axes[0, k + 1].set_title(f"kernel {k}", fontsize=9)
        axes[1, k + 1].imshow(np.asarray(maps[:, :, k]), cmap="gray")
        axes[1, k + 1].set_title(f"ReLU map {k}", fontsize=9)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"The first convolution's filters ({trained}) and what they see in a {source}")
    return _save(fig, out_dir, "feature_maps.png")


FIGURES = (
    filters_figure,
    feature_maps_figure,
    convolution_steps_figure,
    padding_stride_figure,
    activations_figure,
    pooling_figure,
    upsampling_figure,
)
"""Every figure, in the order of the course."""

EXPECTED = (
    "filters.png", "feature_maps.png", "convolution_steps.png", "padding_stride.png", "activations.png", "pooling.png",
    "upsampling.png",
)  # fmt: skip
"""The PNG files :func:`main` writes."""


def main(out_dir: Path) -> list[Path]:
    """Write every figure into ``out_dir`` (created if missing); return their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return [figure(out_dir) for figure in FIGURES]


if __name__ == "__main__":
    for written in main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/images")):
        print(written)
