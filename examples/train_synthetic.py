"""Train the course's CNN with optax for a few steps on synthetic 28x28 images.

The labels are a function of the image (which quadrant is brightest), so the
loss falls. For real data run ``make train`` or ``funcnn train``.
"""

import jax
import jax.numpy as jnp
import optax

import funcnn as fn


def make_data(key: jax.Array, n: int) -> tuple[jax.Array, jax.Array]:
    images = jax.random.uniform(key, (n, 28, 28, 1))
    quadrants = images.reshape(n, 2, 14, 2, 14).mean(axis=(2, 4)).reshape(n, 4)
    return images, jnp.argmax(quadrants, axis=1)


def main(steps: int = 30) -> float:
    model = fn.models.seed_cnn(num_classes=4)
    _, params, state = model.init(jax.random.key(0), fn.models.INPUT_SHAPE)
    optimizer = optax.adam(1e-3)
    opt_state = optimizer.init(params)
    images, labels = make_data(jax.random.key(1), 256)

    @jax.jit
    def step(params, opt_state, state):
        def loss_fn(p):
            logits, new_state = model.apply(p, state, images, train=True)
            return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(), new_state

        (loss, state), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, state, loss

    for i in range(steps):
        params, opt_state, state, loss = step(params, opt_state, state)
        if i % 10 == 0 or i == steps - 1:
            print(f"step {i:3d}  loss {float(loss):.4f}")
    return float(loss)


if __name__ == "__main__":
    main()
