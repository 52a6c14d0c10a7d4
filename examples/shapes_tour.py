"""Input shapes, neuron counts, output-size formulas and a model summary."""

import funcnn as fn
from funcnn.shapes import conv_output_size, num_neurons, pool_output_size, same_padding


def main() -> None:
    print("input neurons of a 28x28x1 image:", num_neurons((28, 28, 1)))
    print("VALID 3x3 on 28:", conv_output_size(28, 3))
    print("3x3, stride 2, padding 1 on 28:", conv_output_size(28, 3, stride=2, padding=1))
    print("SAME padding for 3x3 on 28:", same_padding(28, 3))
    print("2x2 max pool on 26:", pool_output_size(26, 2))
    print(fn.summary(fn.models.seed_cnn(), fn.models.INPUT_SHAPE))


if __name__ == "__main__":
    main()
