"""Ready models: each takes 28x28x1 images to 10 logits, with every layer named in its summary."""

import jax
import pytest

import funcnn as fn


@pytest.mark.parametrize("name", sorted(fn.models.MODELS))
def test_models_take_28x28_images_to_10_logits(name):
    shape, params, state = fn.models.MODELS[name]().init(jax.random.key(0), fn.models.INPUT_SHAPE)
    assert shape == (-1, 10)
    y, _ = jax.jit(fn.models.MODELS[name]().apply)(params, state, jax.numpy.zeros((2, 28, 28, 1)))
    assert y.shape == (2, 10)

@pytest.mark.parametrize("name", sorted(fn.models.MODELS))
def test_model_summaries_count_what_init_builds(name):
    model = fn.models.MODELS[name]()
    _, params, _ = model.init(jax.random.key(0), fn.models.INPUT_SHAPE)
    assert f"trainable params: {fn.count_params(params):,}" in fn.summary(model, fn.models.INPUT_SHAPE)
