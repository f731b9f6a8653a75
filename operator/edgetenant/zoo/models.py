"""The zoo's architectures, written from their papers / reference implementations.

Each builder appends to a GraphBuilder and returns the feature tensor before the classifier.
Layer widths follow torchvision's reference models (Keras' for MobileNet V1), so parameter
counts match the published figures up to BN folding (a folded BN keeps one bias per channel
where the trained model had a scale and a shift).
"""

from __future__ import annotations

from edgetenant.zoo.graph import GraphBuilder, Tensor

# A residual branch's last conv gets a small gain so activations do not grow block after
# block (the role zero-init gamma plays in training recipes).
_RESIDUAL_GAIN = 0.2


def mobilenet_v1(g: GraphBuilder, x: Tensor) -> Tensor:
    """MobileNet V1 1.0 (Howard et al. 2017): depthwise-separable convolutions."""
    x = g.conv(x, 32, 3, stride=2)
    for channels, stride in [
        (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
        (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1),
    ]:  # fmt: skip
        x = g.conv(x, x.channels, 3, stride=stride, groups=x.channels)
        x = g.conv(x, channels, 1)
    return g.global_avg_pool(x)


def mobilenet_v2(g: GraphBuilder, x: Tensor) -> Tensor:
    """MobileNet V2 1.0 (Sandler et al. 2018): inverted residuals with linear bottlenecks."""
    x = g.conv(x, 32, 3, stride=2, act="relu6")
    for expand, channels, repeats, first_stride in [
        (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
        (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1),
    ]:  # fmt: skip
        for i in range(repeats):
            stride = first_stride if i == 0 else 1
            block_in = x
            hidden = x.channels * expand
            y = g.conv(x, hidden, 1, act="relu6") if expand != 1 else x
            y = g.conv(y, hidden, 3, stride=stride, groups=hidden, act="relu6")
            residual = stride == 1 and block_in.channels == channels
            y = g.conv(y, channels, 1, act=None, gain=_RESIDUAL_GAIN if residual else 1.0)
            x = g.add(block_in, y) if residual else y
    x = g.conv(x, 1280, 1, act="relu6")
    return g.global_avg_pool(x)


def _resnet(g: GraphBuilder, x: Tensor, *, blocks: list[int], bottleneck: bool) -> Tensor:
    x = g.conv(x, 64, 7, stride=2)
    x = g.pool(x, "max", 3, stride=2, padding=1)
    for stage, (width, count) in enumerate(zip([64, 128, 256, 512], blocks, strict=True)):
        for i in range(count):
            stride = 2 if stage > 0 and i == 0 else 1
            out_channels = width * 4 if bottleneck else width
            if bottleneck:  # ResNet v1.5: the stride sits on the 3x3 conv
                y = g.conv(x, width, 1)
                y = g.conv(y, width, 3, stride=stride)
                y = g.conv(y, out_channels, 1, act=None, gain=_RESIDUAL_GAIN)
            else:
                y = g.conv(x, width, 3, stride=stride)
                y = g.conv(y, width, 3, act=None, gain=_RESIDUAL_GAIN)
            shortcut = x
            if stride != 1 or x.channels != out_channels:
                shortcut = g.conv(x, out_channels, 1, stride=stride, act=None)
            x = g.activation(g.add(shortcut, y), "relu")
    return g.global_avg_pool(x)


def resnet18(g: GraphBuilder, x: Tensor) -> Tensor:
    """ResNet-18 (He et al. 2016)."""
    return _resnet(g, x, blocks=[2, 2, 2, 2], bottleneck=False)


def resnet50(g: GraphBuilder, x: Tensor) -> Tensor:
    """ResNet-50 v1.5 (He et al. 2016; stride on the 3x3 conv as in torchvision)."""
    return _resnet(g, x, blocks=[3, 4, 6, 3], bottleneck=True)


def _inception_a(g: GraphBuilder, x: Tensor, pool_features: int) -> Tensor:
    b1 = g.conv(x, 64, 1)
    b5 = g.conv(g.conv(x, 48, 1), 64, 5)
    b3 = g.conv(g.conv(g.conv(x, 64, 1), 96, 3), 96, 3)
    bp = g.conv(g.pool(x, "avg", 3, stride=1, padding=1), pool_features, 1)
    return g.concat([b1, b5, b3, bp])


def _inception_b(g: GraphBuilder, x: Tensor) -> Tensor:
    b3 = g.conv(x, 384, 3, stride=2, padding=0)
    bd = g.conv(g.conv(g.conv(x, 64, 1), 96, 3), 96, 3, stride=2, padding=0)
    bp = g.pool(x, "max", 3, stride=2)
    return g.concat([b3, bd, bp])


def _inception_c(g: GraphBuilder, x: Tensor, c7: int) -> Tensor:
    b1 = g.conv(x, 192, 1)
    b7 = g.conv(g.conv(g.conv(x, c7, 1), c7, (1, 7)), 192, (7, 1))
    bd = g.conv(x, c7, 1)
    for out, kernel in [(c7, (7, 1)), (c7, (1, 7)), (c7, (7, 1)), (192, (1, 7))]:
        bd = g.conv(bd, out, kernel)
    bp = g.conv(g.pool(x, "avg", 3, stride=1, padding=1), 192, 1)
    return g.concat([b1, b7, bd, bp])


def _inception_d(g: GraphBuilder, x: Tensor) -> Tensor:
    b3 = g.conv(g.conv(x, 192, 1), 320, 3, stride=2, padding=0)
    b7 = g.conv(g.conv(g.conv(x, 192, 1), 192, (1, 7)), 192, (7, 1))
    b7 = g.conv(b7, 192, 3, stride=2, padding=0)
    bp = g.pool(x, "max", 3, stride=2)
    return g.concat([b3, b7, bp])


def _inception_e(g: GraphBuilder, x: Tensor) -> Tensor:
    b1 = g.conv(x, 320, 1)
    b3 = g.conv(x, 384, 1)
    b3 = g.concat([g.conv(b3, 384, (1, 3)), g.conv(b3, 384, (3, 1))])
    bd = g.conv(g.conv(x, 448, 1), 384, 3)
    bd = g.concat([g.conv(bd, 384, (1, 3)), g.conv(bd, 384, (3, 1))])
    bp = g.conv(g.pool(x, "avg", 3, stride=1, padding=1), 192, 1)
    return g.concat([b1, b3, bd, bp])


def inception_v3(g: GraphBuilder, x: Tensor) -> Tensor:
    """Inception V3 (Szegedy et al. 2016), 299x299, without the training-only auxiliary head."""
    x = g.conv(x, 32, 3, stride=2, padding=0)
    x = g.conv(x, 32, 3, padding=0)
    x = g.conv(x, 64, 3)
    x = g.pool(x, "max", 3, stride=2)
    x = g.conv(x, 80, 1)
    x = g.conv(x, 192, 3, padding=0)
    x = g.pool(x, "max", 3, stride=2)
    for pool_features in (32, 64, 64):
        x = _inception_a(g, x, pool_features)
    x = _inception_b(g, x)
    for c7 in (128, 160, 160, 192):
        x = _inception_c(g, x, c7)
    x = _inception_d(g, x)
    x = _inception_e(g, x)
    x = _inception_e(g, x)
    return g.global_avg_pool(x)


def efficientnet_b0(g: GraphBuilder, x: Tensor) -> Tensor:
    """EfficientNet-B0 (Tan & Le 2019): MBConv blocks with squeeze-and-excitation and SiLU."""
    x = g.conv(x, 32, 3, stride=2, act="silu")
    for expand, kernel, first_stride, channels, repeats in [
        (1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
        (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1),
    ]:  # fmt: skip
        for i in range(repeats):
            stride = first_stride if i == 0 else 1
            block_in = x
            hidden = x.channels * expand
            y = g.conv(x, hidden, 1, act="silu") if expand != 1 else x
            y = g.conv(y, hidden, kernel, stride=stride, groups=hidden, act="silu")
            y = g.squeeze_excite(y, max(1, block_in.channels // 4))
            residual = stride == 1 and block_in.channels == channels
            # x2 undoes the ~0.5 of the SE sigmoid gate on random weights.
            y = g.conv(y, channels, 1, act=None, gain=2 * (_RESIDUAL_GAIN if residual else 1.0))
            x = g.add(block_in, y) if residual else y
    x = g.conv(x, 1280, 1, act="silu")
    return g.global_avg_pool(x)
