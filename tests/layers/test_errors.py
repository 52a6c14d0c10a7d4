"""Bad input: each raises LayerConfigError at construction, init or trace time, naming layer, argument and shapes."""

import jax
import jax.numpy as jnp
import pytest

import funcnn as fn

KEY = jax.random.key(0)


@pytest.mark.parametrize(
    "make, input_shape, match",
    [
        (
            lambda: fn.Conv(4, (3, 3)),
            (-1, 28, 28),
            r"Conv: argument `kernel_size` \(3, 3\) is 2-D, so the input must have rank 4, but has shape \(-1, 28, 28\)",
        ),
        (lambda: fn.Conv(4, 3), (-1, 28), r"Conv: argument `x` must have rank 3, 4 or 5 .* shape \(-1, 28\)"),
        (
            lambda: fn.Conv(4, 5),
            (-1, 3, 3, 1),
            r"Conv: argument `kernel_size` \(5, 5\) .* larger than the padded input \(3, 3\)",
        ),
        (
            lambda: fn.Conv(4, 3, dilation=3),
            (-1, 6, 6, 1),
            r"Conv: argument `kernel_size` \(3, 3\) \(dilated span \(7, 7\)\)",
        ),
        (
            lambda: fn.Conv(4, 3, strides=(1, 2, 1)),
            (-1, 6, 6, 1),
            r"Conv: argument `strides` has 3 entries \(1, 2, 1\) but the input has 2 spatial",
        ),
        (
            lambda: fn.Conv(4, 3, groups=2),
            (-1, 6, 6, 3),
            r"Conv: argument `groups`=2 does not divide the input's channels 3 \(input shape \(-1, 6, 6, 3\)\)",
        ),
        (
            lambda: fn.Conv(4, 3, padding=((1, 1),)),
            (-1, 6, 6, 1),
            r"Conv: argument `padding` has 1 entries \(\(1, 1\),\) but the input has 2 spatial dimensions \(spatial shape \(6, 6\)\)",
        ),
        (
            lambda: fn.ConvTranspose(4, (3, 3)),
            (-1, 4, 1),
            r"ConvTranspose: argument `kernel_size` \(3, 3\) is 2-D, so the input must have rank 4, but has shape \(-1, 4, 1\)",
        ),
        (
            lambda: fn.MaxPool(7),
            (-1, 6, 6, 1),
            r"MaxPool: argument `window` \(7, 7\) is larger than the padded input .* \(6, 6\)",
        ),
        (
            lambda: fn.AvgPool((2, 2)),
            (-1, 6, 1),
            r"AvgPool: argument `window` has 2 entries \(2, 2\) but the input has 1 spatial",
        ),
        (
            lambda: fn.GlobalAvgPool(),
            (-1, 6),
            r"GlobalAvgPool: argument `x` must have rank 3, 4 or 5, but has shape \(-1, 6\) \(rank 2\)",
        ),
        (lambda: fn.Dense(3), (-1,), r"Dense: argument `x` must have rank >= 2 .* shape \(-1,\)"),
        (
            lambda: fn.GroupNorm(3),
            (-1, 4, 4, 4),
            r"GroupNorm: argument `num_groups`=3 does not divide the input's channels 4 \(input shape \(-1, 4, 4, 4\)\)",
        ),
        (
            lambda: fn.FixedConv(fn.filters.sobel(0)),
            (-1, 6, 6, 3),
            r"FixedConv: argument `x` has 3 channels but the kernel expects 1 x 1 groups = 1 \(x.shape=\(-1, 6, 6, 3\)",
        ),
        (
            lambda: fn.ConvTranspose(2, 3, padding=((4, 4), (4, 4))),
            (-1, 2, 2, 1),
            r"ConvTranspose: argument `padding` leaves no output \(output spatial \(-4, -4\)\)",
        ),
        (
            lambda: fn.fan_in_concat(axis=3),
            ((-1, 2), (-1, 2)),
            r"fan_in_concat: argument `axis`=3 is out of range \(or repeated\) for an input of shape \(-1, 2\)",
        ),
    ],
)
def test_init_errors(make, input_shape, match):
    layer = make()  # constructs: the error comes from init
    with pytest.raises(fn.LayerConfigError, match=match):
        layer.init(KEY, input_shape)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: fn.Conv(0, 3), r"Conv: argument `features` must be a positive integer, got 0 \(int\)"),
        (lambda: fn.Conv(3, 3, groups=2), r"Conv: argument `groups`=2 does not divide `features` 3"),
        (
            lambda: fn.Conv(3, 3, padding_mode="mirror"),
            r"Conv: argument `padding_mode` must be one of \('zeros', 'reflect', 'replicate', 'circular'\), got 'mirror'",
        ),
        (lambda: fn.Dense(-2), r"Dense: argument `features` must be a positive integer, got -2 \(int\)"),
        (lambda: fn.Dropout(1.0), r"Dropout: argument `rate` must be in \[0, 1\), got 1.0"),
        (lambda: fn.BatchNorm(momentum=1.5), r"BatchNorm: argument `momentum` must be in \[0, 1\), got 1.5"),
        (lambda: fn.GroupNorm(0), r"GroupNorm: argument `num_groups` must be a positive integer, got 0 \(int\)"),
        (lambda: fn.filters.sobel(2), r"sobel: argument `axis` must be 0 or 1, got 2"),
        (lambda: fn.filters.gaussian(0, 1.0), r"gaussian: argument `size` must be a positive integer, got 0"),
        (lambda: fn.filters.gaussian(3, 0.0), r"gaussian: argument `sigma` must be > 0, got 0.0"),
        (lambda: fn.filters.box_blur(-1), r"box_blur: argument `size` must be a positive integer, got -1"),
        (
            lambda: fn.Conv(2, 3, grad="numeric"),
            r"Conv: argument `grad` must be one of \('custom', 'custom_vjp', 'autodiff'\), got 'numeric'",
        ),
        (lambda: fn.Relu(grad="numeric"), r"Relu: argument `grad` must be one of \(.*\), got 'numeric'"),
        (lambda: fn.MaxPool(2, grad="jvp"), r"MaxPool: argument `grad` must be one of \(.*\), got 'jvp'"),
        (lambda: fn.GlobalAvgPool(grad=False), r"GlobalAvgPool: argument `grad` must be one of \(.*\), got False"),
        (lambda: fn.Dense(2, grad="fd"), r"Dense: argument `grad` must be one of \(.*\), got 'fd'"),
        (
            lambda: fn.FixedConv(jnp.ones((3, 3))),
            r"FixedConv: argument `kernel` must have rank 3, 4 or 5, but has shape \(3, 3\) \(rank 2\)",
        ),
        (lambda: fn.Dropout("0.5"), r"Dropout: argument `rate` must be a real number, got '0.5' \(str\)"),
        # Checked at construction since the checks module (no shapes needed):
        (lambda: fn.Conv(4, 3, strides=0), r"Conv: argument `strides` must be a positive integer, got 0"),
        (
            lambda: fn.Conv(4, 3, padding="FULL"),
            r"Conv: argument `padding` must be 'VALID', 'SAME', an int or \(low, high\) pairs, got 'FULL'",
        ),
        (
            lambda: fn.Conv(4, 3, padding=-1, padding_mode="reflect"),
            r"Conv: argument `padding` -1 must be non-negative with padding_mode='reflect'",
        ),
        (
            lambda: fn.ConvTranspose(4, 3, strides=2, output_padding=2),
            r"ConvTranspose: argument `output_padding` \(2,\) must be smaller than the stride \(2,\) or the dilation \(1,\)",
        ),
        (lambda: fn.MaxPool(0), r"MaxPool: argument `window` must be a positive integer, got 0"),
        (lambda: fn.MaxPool(2, strides=-1), r"MaxPool: argument `strides` must be a positive integer, got -1"),
        (
            lambda: fn.AvgPool(2, padding="full"),
            r"AvgPool: argument `padding` must be 'VALID', 'SAME'.*got 'full'",
        ),
        (
            lambda: fn.Conv(2, (3, 3, 3, 3)),
            r"Conv: argument `kernel_size` must be a positive integer or 1 or 2 or 3 of them, got \(3, 3, 3, 3\)",
        ),
        (
            lambda: fn.Conv(2, 3, padding=((1, 2, 3), 1)),
            r"Conv: argument `padding` entries must be ints or \(low, high\) pairs of ints, got \(1, 2, 3\)",
        ),
    ],
)
def test_constructor_errors(make, match):
    with pytest.raises(fn.LayerConfigError, match=match):
        make()


@pytest.mark.parametrize(
    "layer, init_shape, apply_shape, match",
    [
        (
            fn.Conv(4, 3),
            (-1, 6, 6, 1),
            (2, 6, 6, 3),
            r"Conv: argument `x` has 3 channels \(x.shape=\(2, 6, 6, 3\)\) but the layer was initialised for 1",
        ),
        (
            # The params' kernel (3, 3, 1, 4) fixes the rank at 4, so a rank-3 input is refused
            # for its rank (not read as 1-D with 6 channels).
            fn.Conv(4, 3),
            (-1, 6, 6, 1),
            (2, 6, 6),
            r"^Conv: argument `x` must have rank 4, but has shape \(2, 6, 6\) \(rank 3\)",
        ),
        (
            fn.ConvTranspose(4, 3),
            (-1, 6, 6, 2),
            (2, 6, 6, 1),
            r"ConvTranspose: argument `x` has 1 channels \(x.shape=\(2, 6, 6, 1\)\) but the layer was initialised for 2",
        ),
        (
            fn.Dense(4),
            (-1, 5),
            (2, 6),
            r"Dense: argument `x` has 6 channels \(x.shape=\(2, 6\)\) but the layer was initialised for 5 \(`kernel` has shape \(5, 4\)\)",
        ),
        (
            fn.BatchNorm(),
            (-1, 5),
            (2, 6),
            r"BatchNorm: argument `x` has 6 channels \(x.shape=\(2, 6\)\) but the layer was initialised for 5",
        ),
        (
            fn.MaxPool(4),
            (-1, 6, 6, 1),
            (2, 3, 3, 1),
            r"MaxPool: argument `window` \(4, 4\) is larger than the padded input \(input spatial shape \(3, 3\)",
        ),
        (
            fn.LayerNorm(),
            (-1, 8),
            (2, 4),
            r"LayerNorm: argument `x` has 4 channels \(x.shape=\(2, 4\)\) but the layer was initialised for 8 \(`scale` has shape \(8,\)\)",
        ),
        (
            fn.GroupNorm(2),
            (-1, 4, 4, 8),
            (2, 4, 4, 4),
            r"GroupNorm: argument `x` has 4 channels \(x.shape=\(2, 4, 4, 4\)\) but the layer was initialised for 8",
        ),
        (
            fn.Conv(2, 3),
            (-1, 8, 8, 1),
            (1, 2, 2, 1),
            r"Conv: argument `kernel_size` \(3, 3\) .* larger than the padded input \(2, 2\)",
        ),
        (
            fn.ConvTranspose(2, 3, padding=((3, 3), (3, 3))),
            (-1, 8, 8, 1),
            (1, 1, 1, 1),
            r"ConvTranspose: argument `padding` leaves no output \(output spatial \(-3, -3\)\) for x.shape=\(1, 1, 1, 1\)",
        ),
    ],
)
def test_apply_errors_at_trace_time(layer, init_shape, apply_shape, match):
    _, params, state = layer.init(KEY, init_shape)
    with pytest.raises(fn.LayerConfigError, match=match):
        jax.jit(layer.apply).lower(params, state, jax.ShapeDtypeStruct(apply_shape, jnp.float32))


def test_dropout_in_training_needs_a_key():
    layer = fn.Dropout(0.3)
    with pytest.raises(
        fn.LayerConfigError,
        match=r"Dropout: argument `key` is required when train=True \(rate=0.3, x.shape=\(2, 3\)\)",
    ):
        layer.apply((), (), jnp.ones((2, 3)), train=True)


def test_layer_config_error_is_a_value_error():
    assert issubclass(fn.LayerConfigError, ValueError)


def test_numpy_integers_are_accepted_as_sizes():
    import numpy as np

    shape, params, _ = fn.Conv(np.int64(4), np.int64(3)).init(KEY, (-1, 6, 6, 1))
    assert shape == (-1, 4, 4, 4) and params["kernel"].shape == (3, 3, 1, 4)


def test_parallel_checks_the_number_of_params_and_states():
    layer = fn.parallel(fn.Dense(2), fn.Dense(3))
    _, params, state = layer.init(KEY, ((-1, 4), (-1, 4)))
    x = (jnp.ones((1, 4)), jnp.ones((1, 4)))
    with pytest.raises(
        fn.LayerConfigError, match=r"parallel: argument `params` has 1 entries but there are 2 layers"
    ):
        layer.apply(params[:1], state, x)
    with pytest.raises(
        fn.LayerConfigError, match=r"serial: argument `state` has 0 entries but there are 1 layers"
    ):
        fn.serial(fn.Relu()).apply(((),), (), jnp.ones(2))
