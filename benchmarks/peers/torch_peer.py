"""The PyTorch implementation: eager (as its users run it, channels-last) and ``torch.compile``.

Runners run ``steps`` training steps (Adam, lr 1e-3, cross-entropy) or
``steps`` inference calls (``torch.inference_mode``) on the same synthetic
batches as the JAX implementations, on the GPU when PyTorch sees one (the
runners end with ``.item()``, which waits for the device).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from jax_peers import synthetic
from peer_models import walk
from torch import nn


def build_net(model: str) -> nn.Module:
    layers = []
    for layer, _, _, channels, features in walk(model):
        if layer[0] == "conv":
            layers += [nn.Conv2d(channels, layer[1], 3, padding=1), nn.ReLU()]
        elif layer[0] == "pool":
            layers.append(nn.MaxPool2d(2, 2))
        elif layer[0] == "flatten":
            layers.append(nn.Flatten())
        elif layer[0] == "global_avg":
            layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        else:
            layers.append(nn.Linear(features, layer[1]))
            if layer[1] != 10:
                layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def build_torch(model: str, batch: int, steps: int, compile: bool = False) -> dict[str, Callable[[], None]]:
    torch.manual_seed(0)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    net = build_net(model).to(device, memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    images, labels = synthetic(model, batch, steps)
    images = [
        torch.from_numpy(x).permute(0, 3, 1, 2).to(device).contiguous(memory_format=torch.channels_last)
        for x in images
    ]
    labels = [torch.from_numpy(y).long().to(device) for y in labels]
    loss_fn = nn.CrossEntropyLoss()

    def train_step(x, y):
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(net(x), y)
        loss.backward()
        optimizer.step()
        return loss

    forward = net
    if compile:
        train_step, forward = torch.compile(train_step), torch.compile(net)

    def run_step() -> None:
        net.train()
        for x, y in zip(images, labels):
            loss = train_step(x, y)
        loss.item()

    def run_infer() -> None:
        net.eval()
        with torch.inference_mode():
            for x in images:
                logits = forward(x)
        logits.sum().item()

    return {"step": run_step, "infer": run_infer}
