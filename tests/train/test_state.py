"""The train state: built concretely or abstractly, and the model's promised output shape."""

import jax
import optax

import funcnn as fn
from funcnn.train import abstract_train_state, init_train_state
from funcnn.train.state import model_output_shape


def test_model_output_shape_is_what_init_promises_without_allocating():
    assert model_output_shape(fn.models.fashion_mnist_cnn(), (-1, 28, 28, 1)) == (-1, 10)
    assert model_output_shape(fn.serial(fn.Flatten(), fn.Dense(7)), (-1, 6, 6)) == (-1, 7)


def test_abstract_state_matches_the_concrete_one(model):
    optimizer = optax.adam(1e-3)
    concrete = init_train_state(model, optimizer, jax.random.key(0), (-1, 6, 6, 1))
    abstract = abstract_train_state(model, optimizer, (-1, 6, 6, 1))
    assert jax.tree.map(lambda a: (a.shape, a.dtype), concrete) == jax.tree.map(
        lambda a: (a.shape, a.dtype), abstract
    )
