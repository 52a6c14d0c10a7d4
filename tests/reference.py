"""Naive references written from the course's "steps of convolution": slide, multiply, sum, add bias."""

import itertools

import numpy as np


def conv_reference(x, kernel, bias=None, strides=None, padding=None, dilation=None, groups=1):
    """Slide, multiply, sum, add bias: ``y[o] = b + sum_k x[o s + k d] K[k]``, one kernel tap at a time.

    ``x``: ``(N, *spatial, C_in)``; ``kernel``: ``(*k, C_in / groups, C_out)``;
    ``padding``: ``(low, high)`` pairs (zeros; negative crops); returns ``(N, *out, C_out)``.
    """
    x, kernel = np.asarray(x, np.float64), np.asarray(kernel, np.float64)
    rank = kernel.ndim - 2
    strides = strides or (1,) * rank
    padding = padding or ((0, 0),) * rank
    dilation = dilation or (1,) * rank
    x = np.pad(x, ((0, 0), *((max(lo, 0), max(hi, 0)) for lo, hi in padding), (0, 0)))
    crop = tuple(slice(max(-lo, 0), n - max(-hi, 0)) for (lo, hi), n in zip(padding, x.shape[1:-1]))
    x = x[(slice(None), *crop, slice(None))]
    ksize = kernel.shape[:-2]
    span = [d * (f - 1) + 1 for f, d in zip(ksize, dilation)]
    out = [(n - s_) // s + 1 for n, s_, s in zip(x.shape[1:-1], span, strides)]
    c_in_group, c_out = kernel.shape[-2], kernel.shape[-1]
    per_group = c_out // groups
    y = np.zeros((x.shape[0], *out, c_out)) + (0.0 if bias is None else np.asarray(bias, np.float64))
    for k in itertools.product(*(range(f) for f in ksize)):
        # The input each output position sees under kernel tap k: start k d, step s.
        taps = tuple(
            slice(kk * d, kk * d + (o - 1) * s + 1, s) for kk, d, o, s in zip(k, dilation, out, strides)
        )
        for g in range(groups):
            window = x[(slice(None), *taps, slice(g * c_in_group, (g + 1) * c_in_group))]
            y[..., g * per_group : (g + 1) * per_group] += (
                window @ kernel[(*k, slice(None), slice(g * per_group, (g + 1) * per_group))]
            )
    return y


def pool_reference(x, window, strides, padding, reduce):
    """Loop over every window; padded positions are ``nan`` and ignored by ``reduce``."""
    x = np.pad(np.asarray(x, np.float64), ((0, 0), *padding, (0, 0)), constant_values=np.nan)
    out = [(n - f) // s + 1 for n, f, s in zip(x.shape[1:-1], window, strides)]
    y = np.zeros((x.shape[0], *out, x.shape[-1]))
    for pos in itertools.product(*(range(o) for o in out)):
        sl = tuple(slice(p * s, p * s + f) for p, s, f in zip(pos, strides, window))
        block = x[(slice(None), *sl, slice(None))].reshape(x.shape[0], -1, x.shape[-1])
        y[(slice(None), *pos, slice(None))] = reduce(block)
    return y
