"""The two benchmark models, as one layer list every implementation builds from, and their FLOPs.

``fashion_cnn`` (28x28x1): conv32-pool-conv64-pool-flatten-dense128-dense10, 421,642 params.
``cifar_vgg`` (32x32x3): 2xconv64-pool-2xconv128-pool-2xconv256-pool-global avg-dense10,
1,147,978 params. Every conv is 3x3 SAME with ReLU, every pool 2x2 stride 2, dense
layers but the last have ReLU.

FLOPs are counted analytically: a multiply-add is 2, a training step is 3x the
forward pass (forward, input gradient, weight gradient); pooling, activations
and the optimiser are left out (they are a few percent).
"""

from __future__ import annotations

import math

MODELS = {
    "fashion_cnn": {
        "input": (28, 28, 1),
        "layers": [
            ("conv", 32),
            ("pool",),
            ("conv", 64),
            ("pool",),
            ("flatten",),
            ("dense", 128),
            ("dense", 10),
        ],
    },
    "cifar_vgg": {
        "input": (32, 32, 3),
        "layers": [
            ("conv", 64),
            ("conv", 64),
            ("pool",),
            ("conv", 128),
            ("conv", 128),
            ("pool",),
            ("conv", 256),
            ("conv", 256),
            ("pool",),
            ("global_avg",),
            ("dense", 10),
        ],  # fmt: skip
    },
}


def walk(name: str) -> list[tuple[tuple, int, int, int, int | None]]:
    """Each layer of model ``name`` with what enters it: ``(layer, height, width, channels, features)``,
    ``features`` the width of the flat vector a dense layer takes (``None`` before the flatten)."""
    height, width, channels = MODELS[name]["input"]
    features, walked = None, []
    for layer in MODELS[name]["layers"]:
        walked.append((layer, height, width, channels, features))
        if layer[0] == "conv":
            channels = layer[1]
        elif layer[0] == "pool":
            height, width = height // 2, width // 2
        elif layer[0] in ("flatten", "global_avg"):
            features = height * width * channels if layer[0] == "flatten" else channels
        else:
            features = layer[1]
    return walked


def params_and_flops(name: str) -> tuple[int, float]:
    """``(parameter count, forward FLOPs per image)`` of model ``name``."""
    params, flops = 0, 0.0
    for layer, height, width, channels, features in walk(name):
        if layer[0] == "conv":
            params += 9 * channels * layer[1] + layer[1]
            flops += 2 * height * width * 9 * channels * layer[1]
        elif layer[0] == "dense":
            params += features * layer[1] + layer[1]
            flops += 2 * features * layer[1]
    return params, flops


def train_gflop_per_image(name: str) -> float:
    """Training FLOPs per image (3x the forward pass), in GFLOP."""
    return 3 * params_and_flops(name)[1] / 1e9


assert params_and_flops("fashion_cnn")[0] == 421_642 and params_and_flops("cifar_vgg")[0] == 1_147_978
assert math.isclose(train_gflop_per_image("fashion_cnn"), 0.0245, rel_tol=0.05)
