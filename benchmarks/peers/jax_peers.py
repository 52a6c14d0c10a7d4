"""The JAX implementations of the benchmark models: funcnn, raw JAX, Flax (linen and NNX), Equinox.

Each ``build_*`` returns runners, zero-argument callables that each run
``steps`` training steps (``step``: one jitted call per step; ``scan``: one
``lax.scan`` over the steps in one call) or ``steps`` inference calls
(``infer``) and block until done. All train with Adam (lr 1e-3) on
softmax cross-entropy, NHWC float32 inputs, on the same synthetic batches.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from peer_models import MODELS, walk

Runners = dict[str, Callable[[], None]]


def synthetic(model: str, batch: int, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """``steps`` batches of random inputs and labels, ``(steps, batch, H, W, C)`` and ``(steps, batch)``."""
    rng = np.random.default_rng(0)
    images = rng.standard_normal((steps, batch, *MODELS[model]["input"]), np.float32)
    return images, rng.integers(0, 10, (steps, batch)).astype(np.int32)


def _loss(logits: jax.Array, labels: jax.Array) -> jax.Array:
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def _data_parallel(images: np.ndarray, labels: np.ndarray, state):
    """The batches and the state on the devices: with several, each batch split along a ``"data"``
    mesh axis and the state replicated (``jit`` then partitions the step, as for funcnn)."""
    if jax.device_count() == 1:
        return (*jax.device_put((images, labels)), state)
    mesh = jax.make_mesh((jax.device_count(),), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    split = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(None, "data"))
    whole = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    return (*jax.device_put((images, labels), split), jax.device_put(state, whole))


def _runners(step: Callable, state, images, labels, infer: Callable, params_of: Callable) -> Runners:
    """Runners for a pure ``step(state, x, y) -> (state, loss)`` and ``infer(params, x) -> logits``,
    data-parallel when JAX sees several devices."""
    images, labels, state = _data_parallel(images, labels, state)
    jitted, scanned = (
        jax.jit(step, donate_argnums=0),
        jax.jit(lambda s, xs, ys: jax.lax.scan(lambda c, b: step(c, *b), s, (xs, ys)), donate_argnums=0),
    )
    infer = jax.jit(infer)
    holder = {"step": state, "scan": jax.tree.map(jnp.copy, state)}

    def run_step() -> None:
        state = holder["step"]
        for x, y in zip(images, labels):
            state, loss = jitted(state, x, y)
        holder["step"] = state
        jax.block_until_ready(loss)

    def run_scan() -> None:
        holder["scan"], losses = scanned(holder["scan"], images, labels)
        jax.block_until_ready(losses)

    def run_infer() -> None:
        params = params_of(holder["step"])
        for x in images:
            logits = infer(params, x)
        jax.block_until_ready(logits)

    return {"step": run_step, "scan": run_scan, "infer": run_infer}


def build_funcnn(model: str, batch: int, steps: int, grad: str = "custom") -> Runners:
    """funcnn as its users run it: data-parallel over every device JAX sees (one per core by default)."""
    import funcnn as fn
    from funcnn import distributed
    from funcnn.train import DEFAULT_LOSS, abstract_train_state, init_train_state
    from funcnn.train.loop import sharded_step
    from funcnn.train.step import build_train_step

    layers = []
    for layer in MODELS[model]["layers"]:
        kind = layer[0]
        if kind == "conv":
            layers += [fn.Conv(layer[1], (3, 3), padding="SAME", grad=grad), fn.Relu(grad=grad)]
        elif kind == "pool":
            layers.append(fn.MaxPool(2, grad=grad))
        elif kind == "flatten":
            layers.append(fn.Flatten())
        elif kind == "global_avg":
            layers.append(fn.GlobalAvgPool(grad=grad))
        else:
            layers.append(fn.Dense(layer[1], grad=grad))
            if layer[1] != 10:
                layers.append(fn.Relu(grad=grad))
    net, optimizer = fn.serial(*layers), optax.adam(1e-3)
    mesh = distributed.data_mesh()
    step = sharded_step(build_train_step(net, DEFAULT_LOSS, optimizer, preprocess=lambda x: x), mesh, False)
    shape = (-1, *MODELS[model]["input"])
    shardings = distributed.state_shardings(mesh, abstract_train_state(net, optimizer, shape))
    state = init_train_state(net, optimizer, jax.random.key(0), shape, shardings=shardings)
    images, labels = synthetic(model, batch, steps)  # placed by _runners, split along "data"

    def pure_step(state, x, y):
        state, metrics = step(state, x, y)
        return state, metrics.loss

    def infer(params_and_state, x):
        x = jax.lax.with_sharding_constraint(x, distributed.batch_sharding(mesh))
        return net.apply(*params_and_state, x)[0]

    return _runners(pure_step, state, images, labels, infer, lambda s: (s.params, s.model_state))


def build_raw_jax(model: str, batch: int, steps: int) -> Runners:
    """Plain ``lax.conv_general_dilated`` / ``reduce_window`` / ``dot``, ``jax.grad``, one device."""
    from jax import lax

    key = jax.random.key(0)
    params = []
    for layer, _, _, channels, features in walk(model):
        key, sub = jax.random.split(key)
        if layer[0] == "conv":
            kernel = jax.random.normal(sub, (3, 3, channels, layer[1])) / np.sqrt(9 * channels)
            params.append((kernel, jnp.zeros(layer[1])))
        elif layer[0] == "dense":
            params.append(
                (jax.random.normal(sub, (features, layer[1])) / np.sqrt(features), jnp.zeros(layer[1]))
            )
    kinds = MODELS[model]["layers"]

    def forward(params, x):
        it = iter(params)
        for layer in kinds:
            if layer[0] == "conv":
                w, b = next(it)
                x = jax.nn.relu(
                    lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
                    + b
                )
            elif layer[0] == "pool":
                x = lax.reduce_window(x, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
            elif layer[0] == "flatten":
                x = x.reshape(x.shape[0], -1)
            elif layer[0] == "global_avg":
                x = x.mean(axis=(1, 2))
            else:
                w, b = next(it)
                x = x @ w + b
                if layer[1] != 10:
                    x = jax.nn.relu(x)
        return x

    optimizer = optax.adam(1e-3)

    def step(state, x, y):
        params, opt_state = state
        loss, grads = jax.value_and_grad(lambda p: _loss(forward(p, x), y))(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    images, labels = synthetic(model, batch, steps)
    return _runners(step, (params, optimizer.init(params)), images, labels, forward, lambda s: s[0])


def flax_linen_net(model: str):
    """The model as a Flax linen ``Module`` (NHWC, Flax's default initialisers)."""
    import flax.linen as nn

    spec = MODELS[model]["layers"]

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            for layer in spec:
                if layer[0] == "conv":
                    x = nn.relu(nn.Conv(layer[1], (3, 3), padding="SAME")(x))
                elif layer[0] == "pool":
                    x = nn.max_pool(x, (2, 2), (2, 2))
                elif layer[0] == "flatten":
                    x = x.reshape(x.shape[0], -1)
                elif layer[0] == "global_avg":
                    x = x.mean(axis=(1, 2))
                else:
                    x = nn.Dense(layer[1])(x)
                    if layer[1] != 10:
                        x = nn.relu(x)
            return x

    return Net()


def build_flax_linen(model: str, batch: int, steps: int) -> Runners:
    net, optimizer = flax_linen_net(model), optax.adam(1e-3)
    images, labels = synthetic(model, batch, steps)
    params = net.init(jax.random.key(0), images[0])

    def step(state, x, y):
        params, opt_state = state
        loss, grads = jax.value_and_grad(lambda p: _loss(net.apply(p, x), y))(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    return _runners(step, (params, optimizer.init(params)), images, labels, net.apply, lambda s: s[0])


def build_flax_nnx(model: str, batch: int, steps: int) -> Runners:
    """Flax NNX, as its users run it: ``nnx.jit`` on the module and ``nnx.Optimizer``."""
    from flax import nnx

    spec = MODELS[model]["layers"]
    rngs = nnx.Rngs(0)
    modules = []
    for layer, _, _, channels, features in walk(model):
        if layer[0] == "conv":
            modules.append(nnx.Conv(channels, layer[1], (3, 3), padding="SAME", rngs=rngs))
        elif layer[0] == "dense":
            modules.append(nnx.Linear(features, layer[1], rngs=rngs))

    class Net(nnx.Module):
        def __init__(self):
            self.layers = nnx.List(modules) if hasattr(nnx, "List") else modules

        def __call__(self, x):
            it = iter(self.layers)
            for layer in spec:
                if layer[0] == "conv":
                    x = nnx.relu(next(it)(x))
                elif layer[0] == "pool":
                    x = nnx.max_pool(x, (2, 2), (2, 2)) if hasattr(nnx, "max_pool") else _max_pool(x)
                elif layer[0] == "flatten":
                    x = x.reshape(x.shape[0], -1)
                elif layer[0] == "global_avg":
                    x = x.mean(axis=(1, 2))
                else:
                    x = next(it)(x)
                    if layer[1] != 10:
                        x = nnx.relu(x)
            return x

    net = Net()
    optimizer = nnx.Optimizer(net, optax.adam(1e-3), wrt=nnx.Param)

    @nnx.jit
    def train_step(net, optimizer, x, y):
        loss, grads = nnx.value_and_grad(lambda m: _loss(m(x), y))(net)
        optimizer.update(net, grads)
        return loss

    @nnx.jit
    def infer(net, x):
        return net(x)

    images, labels = jax.device_put(synthetic(model, batch, steps))

    def run_step() -> None:
        for x, y in zip(images, labels):
            loss = train_step(net, optimizer, x, y)
        jax.block_until_ready(loss)

    def run_infer() -> None:
        for x in images:
            logits = infer(net, x)
        jax.block_until_ready(logits)

    return {"step": run_step, "infer": run_infer}


def _max_pool(x: jax.Array) -> jax.Array:
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")


def build_equinox(model: str, batch: int, steps: int) -> Runners:
    """Equinox as its users run it: channels-first modules ``vmap``-ed over the batch, ``filter_jit``."""
    import equinox as eqx

    spec = MODELS[model]["layers"]
    key = jax.random.key(0)
    modules = []
    for layer, _, _, channels, features in walk(model):
        key, sub = jax.random.split(key)
        if layer[0] == "conv":
            modules.append(eqx.nn.Conv2d(channels, layer[1], 3, padding=1, key=sub))
        elif layer[0] == "pool":
            modules.append(eqx.nn.MaxPool2d(2, 2))
        elif layer[0] == "dense":
            modules.append(eqx.nn.Linear(features, layer[1], key=sub))

    def forward(modules, x):  # one example, (C, H, W)
        it = iter(modules)
        for layer in spec:
            if layer[0] == "conv":
                x = jax.nn.relu(next(it)(x))
            elif layer[0] == "pool":
                x = next(it)(x)
            elif layer[0] == "flatten":
                x = x.reshape(-1)
            elif layer[0] == "global_avg":
                x = x.mean(axis=(1, 2))
            else:
                x = next(it)(x)
                if layer[1] != 10:
                    x = jax.nn.relu(x)
        return x

    optimizer = optax.adam(1e-3)
    opt_state = optimizer.init(eqx.filter(modules, eqx.is_inexact_array))

    @eqx.filter_jit
    def train_step(modules, opt_state, x, y):
        def loss_fn(m):
            return _loss(jax.vmap(forward, in_axes=(None, 0))(m, x), y)

        loss, grads = eqx.filter_value_and_grad(loss_fn)(modules)
        updates, opt_state = optimizer.update(grads, opt_state, eqx.filter(modules, eqx.is_inexact_array))
        return eqx.apply_updates(modules, updates), opt_state, loss

    infer = eqx.filter_jit(lambda m, x: jax.vmap(forward, in_axes=(None, 0))(m, x))
    images, labels = synthetic(model, batch, steps)
    images, labels = jax.device_put((images.transpose(0, 1, 4, 2, 3), labels))  # channels first
    holder = {"modules": modules, "opt_state": opt_state}

    def run_step() -> None:
        for x, y in zip(images, labels):
            holder["modules"], holder["opt_state"], loss = train_step(
                holder["modules"], holder["opt_state"], x, y
            )
        jax.block_until_ready(loss)

    def run_infer() -> None:
        for x in images:
            logits = infer(holder["modules"], x)
        jax.block_until_ready(logits)

    return {"step": run_step, "infer": run_infer}


BUILDERS = {
    "funcnn": build_funcnn,
    "funcnn-autodiff": lambda model, batch, steps: build_funcnn(model, batch, steps, grad="autodiff"),
    "jax": build_raw_jax,
    "flax-linen": build_flax_linen,
    "flax-nnx": build_flax_nnx,
    "equinox": build_equinox,
}
"""Implementation name -> builder; funcnn runs on every device JAX sees, the peers on one."""
