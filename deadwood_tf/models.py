"""Reference architectures, sized by config. All output logits.

Each builder takes `km`, the Keras module to build with: `keras` (Keras 3) by
default, or `tf_keras` for the benchmark's tfmot baseline, which needs a Keras 2
copy of the same architecture (same layer order, so weights copy over with
`set_weights(get_weights())`).

>>> model = build_model("small_cnn", input_shape=(28, 28, 1), num_classes=10)
"""

from __future__ import annotations

import keras

MODELS = ("mlp", "lenet5", "small_cnn", "vgg", "resnet", "mobilenet_xnnpack")


def mlp(input_shape, num_classes, width=256, depth=2, km=keras):
    layers = km.layers
    x = inp = km.Input(input_shape)
    x = layers.Flatten()(x)
    for i in range(depth):
        x = layers.Dense(width, activation="relu", name=f"fc{i + 1}")(x)
    return km.Model(inp, layers.Dense(num_classes, name="logits")(x), name="mlp")


def lenet5(input_shape, num_classes, width=6, depth=2, km=keras):
    del depth
    layers = km.layers
    pad = "same" if min(input_shape[:2]) < 28 else "valid"
    return km.Sequential([
        km.Input(input_shape),
        layers.Conv2D(width, 5, padding="same", activation="relu", name="conv1"),
        layers.MaxPooling2D(),
        layers.Conv2D(16 * width // 6, 5, padding=pad, activation="relu", name="conv2"),
        layers.MaxPooling2D(),
        layers.Flatten(),
        layers.Dense(120, activation="relu", name="fc1"),
        layers.Dense(84, activation="relu", name="fc2"),
        layers.Dense(num_classes, name="logits"),
    ], name="lenet5")


def small_cnn(input_shape, num_classes, width=32, depth=2, km=keras):
    """Conv(w,3)-MaxPool-Conv(2w,3)-MaxPool-Dense(4w)-Dense(classes): with w=32 on
    28x28 inputs, the 225k-parameter CNN of the benchmark protocol."""
    layers = km.layers
    x = inp = km.Input(input_shape)
    for i in range(depth):
        x = layers.Conv2D(width * 2**i, 3, activation="relu", name=f"conv{i + 1}")(x)
        if min(x.shape[1:3]) >= 2:
            x = layers.MaxPooling2D(name=f"pool{i + 1}")(x)
    x = layers.Flatten()(x)
    x = layers.Dense(4 * width, activation="relu", name="fc1")(x)
    return km.Model(inp, layers.Dense(num_classes, name="logits")(x), name="small_cnn")


def vgg(input_shape, num_classes, width=32, depth=3, km=keras):
    """`depth` blocks of two 3x3 convolutions (width doubling) with batch norm."""
    layers = km.layers
    x = inp = km.Input(input_shape)
    for b in range(depth):
        for c in range(2):
            x = layers.Conv2D(width * 2**b, 3, padding="same", use_bias=False,
                              name=f"block{b + 1}_conv{c + 1}")(x)
            x = layers.BatchNormalization(name=f"block{b + 1}_bn{c + 1}")(x)
            x = layers.ReLU()(x)
        if min(x.shape[1:3]) >= 2:
            x = layers.MaxPooling2D(name=f"block{b + 1}_pool")(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dense(4 * width, activation="relu", name="fc1")(x)
    return km.Model(inp, layers.Dense(num_classes, name="logits")(x), name="vgg")


def resnet(input_shape, num_classes, width=16, depth=3, km=keras):
    """A CIFAR-style ResNet: 3 stages of `depth` basic blocks (depth=3: ResNet-20)."""
    layers = km.layers

    def block(x, filters, stride, name):
        shortcut = x
        y = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False,
                          name=f"{name}_conv1")(x)
        y = layers.BatchNormalization(name=f"{name}_bn1")(y)
        y = layers.ReLU()(y)
        y = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv2")(y)
        y = layers.BatchNormalization(name=f"{name}_bn2")(y)
        if stride != 1 or shortcut.shape[-1] != filters:
            shortcut = layers.Conv2D(filters, 1, strides=stride, use_bias=False,
                                     name=f"{name}_proj")(shortcut)
            shortcut = layers.BatchNormalization(name=f"{name}_proj_bn")(shortcut)
        return layers.ReLU()(layers.Add()([y, shortcut]))

    x = inp = km.Input(input_shape)
    x = layers.Conv2D(width, 3, padding="same", use_bias=False, name="stem_conv")(x)
    x = layers.ReLU()(layers.BatchNormalization(name="stem_bn")(x))
    for stage in range(3):
        for b in range(depth):
            stride = 2 if stage > 0 and b == 0 else 1
            x = block(x, width * 2**stage, stride, f"stage{stage + 1}_block{b + 1}")
    x = layers.GlobalAveragePooling2D()(x)
    return km.Model(inp, layers.Dense(num_classes, name="logits")(x), name="resnet")


def mobilenet_xnnpack(input_shape, num_classes, width=96, depth=4, km=keras):
    """A MobileNet-like network that XNNPack's sparse inference can run sparse (its
    documented conditions, "Fast Sparse ConvNets"): a 3x3 stride-2 stem on 3
    channels with padding 1 on each side (an explicit ZeroPadding2D, which
    XNNPack fuses into the convolution; "same" padding is asymmetric at stride
    2), then `depth` blocks of a 3x3 depthwise convolution (padding 1; stride 2
    in the second block) and a 1x1 convolution of `width` channels, then a
    spatial mean (GlobalAveragePooling2D -> MEAN) and the classifier. Grey
    inputs are repeated to 3 channels first. The 1x1 kernels must end at least
    2/3 zeros (float32 export with sparse storage) for XNNPack to switch to its
    sparse kernels. The depthwise convolutions give the network a receptive
    field: 1x1 convolutions alone reach about 40% on MNIST.
    """
    layers = km.layers
    x = inp = km.Input(input_shape)
    if input_shape[-1] == 1:
        x = layers.Concatenate(name="to_rgb")([x, x, x])
    elif input_shape[-1] != 3:
        raise ValueError("Invalid value for argument `input_shape`: expected 1 or 3 channels "
                         f"(XNNPack's sparse stem takes 3). Received: input_shape={input_shape}")
    def norm_relu(x, name):
        # Batch norm folds into the convolution's weights at TFLite conversion
        # (per output channel, so pruned zeros stay zero).
        return layers.ReLU(name=f"{name}_relu")(
            layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x))

    x = layers.ZeroPadding2D(1, name="stem_pad")(x)
    x = norm_relu(layers.Conv2D(width // 2, 3, strides=2, use_bias=False, name="stem_conv")(x),
                  "stem")
    for i in range(depth):
        stride = 2 if i == 1 and min(x.shape[1:3]) >= 4 else 1
        x = layers.ZeroPadding2D(1, name=f"dw{i + 1}_pad")(x)
        x = norm_relu(layers.DepthwiseConv2D(3, strides=stride, use_bias=False,
                                             name=f"dw{i + 1}")(x), f"dw{i + 1}")
        x = norm_relu(layers.Conv2D(width, 1, use_bias=False, name=f"pw{i + 1}")(x),
                      f"pw{i + 1}")
    x = layers.GlobalAveragePooling2D(name="mean")(x)
    return km.Model(inp, layers.Dense(num_classes, name="logits")(x), name="mobilenet_xnnpack")


def build_model(name: str, input_shape, num_classes: int, width: int = 0, depth: int = 0,
                km=keras):
    """One of `MODELS`; `width`/`depth` 0 take the architecture's default; `km`: the
    Keras module (`keras`, or `tf_keras` for a Keras 2 copy)."""
    if name not in MODELS:
        raise ValueError(
            f"Invalid value for `model.name`: expected one of {MODELS}. Received: {name!r}"
        )
    kwargs = {}
    if width:
        kwargs["width"] = int(width)
    if depth:
        kwargs["depth"] = int(depth)
    return globals()[name](tuple(input_shape), int(num_classes), km=km, **kwargs)
