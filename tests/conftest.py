"""Test configuration: strict promotion (as Equinox) and four CPU devices for sharding tests."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
# A spare XLA:CPU pool thread per device, as funcnn.runtime's plan gives (its docstring says why).
os.environ.setdefault("PJRT_NPROC", "8")

import jax  # noqa: E402
import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")

settings.register_profile("funcnn", deadline=None, max_examples=25, derandomize=True)
settings.load_profile("funcnn")


@pytest.fixture(autouse=True)
def strict_dtype_promotion(request):
    """Strict dtype promotion, except in tests marked ``standard_promotion``.

    Those run optax's optimisers, whose bias corrections mix int and float
    scalars, which strict promotion rejects.
    """
    mode = "standard" if request.node.get_closest_marker("standard_promotion") else "strict"
    with jax.numpy_dtype_promotion(mode):
        yield


@pytest.fixture(scope="module")
def x64():
    """float64 for the whole module: gradients are compared in double precision."""
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", previous)
