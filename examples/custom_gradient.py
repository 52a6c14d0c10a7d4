"""Write an op with a hand-written backward pass and check it with ``funcnn.testing``.

The op is the softplus ``log(1 + e^x)``, whose derivative is the sigmoid:
``dL/dx = dL/dy · σ(x)``. ``check_vjp`` compares the rule with JAX's autodiff
of the plain formula and with central finite differences in float64, and
names the argument and the worst entry when they disagree, as it does for
the wrong rule below (``σ(x)`` replaced by ``σ(-x)``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from funcnn import testing


@jax.custom_vjp
def softplus(x: jax.Array) -> jax.Array:
    return jnp.logaddexp(x, 0.0)


def _softplus_fwd(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    return softplus(x), x


def _softplus_bwd(x: jax.Array, dy: jax.Array) -> tuple[jax.Array]:
    """``dL/dx = dL/dy · σ(x)``."""
    return (dy * jax.nn.sigmoid(x),)


softplus.defvjp(_softplus_fwd, _softplus_bwd)


@jax.custom_vjp
def wrong_softplus(x: jax.Array) -> jax.Array:
    return jnp.logaddexp(x, 0.0)


wrong_softplus.defvjp(lambda x: (wrong_softplus(x), x), lambda x, dy: (dy * jax.nn.sigmoid(-x),))


def main() -> str:
    """Check the right rule (silent) and the wrong one; return the wrong one's report."""
    x = jax.random.normal(jax.random.key(0), (4, 5))
    testing.check_vjp(softplus, x, reference=lambda x: jnp.logaddexp(x, 0.0))  # against autodiff
    testing.check_vjp(softplus, x)  # against central finite differences, in float64
    print("softplus: the hand-written rule agrees with autodiff and with finite differences")
    try:
        testing.check_vjp(wrong_softplus, x)
    except AssertionError as error:
        print(f"wrong_softplus, as expected:\n{error}")
        return str(error)
    raise RuntimeError("the wrong rule passed the check")


if __name__ == "__main__":
    main()
