"""A small ONNX graph builder for CNNs that tracks shapes, parameters and MACs as it goes.

Batch norm is folded into the preceding convolution (a conv with a bias), which is what an
inference-optimised export looks like. Weights are seeded random (He-scaled, so activations
stay in a sane range through deep nets); throughput does not depend on their values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


@dataclass(frozen=True, slots=True)
class Tensor:
    """A value in the graph: its name and its (C, H, W) shape without the batch axis."""

    name: str
    channels: int
    height: int
    width: int


@dataclass(slots=True)
class GraphBuilder:
    """Appends nodes and initializers; ``parameters`` and ``macs`` count what was added."""

    seed: int
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    initializers: list[onnx.TensorProto] = field(default_factory=list)
    parameters: int = 0
    macs: int = 0
    _counter: int = 0
    _rng: np.random.Generator = field(init=False)

    def __post_init__(self) -> None:
        self._rng = np.random.default_rng(self.seed)

    def _name(self, prefix: str) -> str:
        self._counter += 1
        return f"{prefix}_{self._counter}"

    def _weight(self, name: str, shape: tuple[int, ...], *, fan_in: int, gain: float = 1.0) -> str:
        scale = gain * np.sqrt(2.0 / max(fan_in, 1))
        values = (self._rng.standard_normal(shape, dtype=np.float32) * np.float32(scale)).astype(np.float32)
        self.initializers.append(numpy_helper.from_array(values, name))
        self.parameters += values.size
        return name

    def _bias(self, name: str, size: int) -> str:
        values = (self._rng.standard_normal(size, dtype=np.float32) * np.float32(0.01)).astype(np.float32)
        self.initializers.append(numpy_helper.from_array(values, name))
        self.parameters += size
        return name

    def conv(
        self,
        x: Tensor,
        out_channels: int,
        kernel: int | tuple[int, int],
        *,
        stride: int = 1,
        padding: int | tuple[int, int] | None = None,
        groups: int = 1,
        act: str | None = "relu",
        gain: float = 1.0,
    ) -> Tensor:
        """Conv (+ folded BN as a bias) (+ activation). Padding defaults to "same" for odd kernels."""
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        if padding is None:
            ph, pw = (kh - 1) // 2, (kw - 1) // 2
        elif isinstance(padding, int):
            ph, pw = padding, padding
        else:
            ph, pw = padding
        name = self._name("conv")
        in_per_group = x.channels // groups
        weight = self._weight(
            f"{name}.w", (out_channels, in_per_group, kh, kw), fan_in=in_per_group * kh * kw, gain=gain
        )
        bias = self._bias(f"{name}.b", out_channels)
        out_h = (x.height + 2 * ph - kh) // stride + 1
        out_w = (x.width + 2 * pw - kw) // stride + 1
        self.macs += out_h * out_w * out_channels * in_per_group * kh * kw
        y = Tensor(name, out_channels, out_h, out_w)
        self.nodes.append(
            helper.make_node(
                "Conv",
                [x.name, weight, bias],
                [name],
                name=name,
                kernel_shape=[kh, kw],
                strides=[stride, stride],
                pads=[ph, pw, ph, pw],
                group=groups,
            )
        )
        return self.activation(y, act) if act else y

    def activation(self, x: Tensor, kind: str) -> Tensor:
        name = self._name(kind)
        if kind == "relu":
            self.nodes.append(helper.make_node("Relu", [x.name], [name], name=name))
        elif kind == "relu6":
            low, high = self._scalar(f"{name}.min", 0.0), self._scalar(f"{name}.max", 6.0)
            self.nodes.append(helper.make_node("Clip", [x.name, low, high], [name], name=name))
        elif kind == "sigmoid":
            self.nodes.append(helper.make_node("Sigmoid", [x.name], [name], name=name))
        elif kind == "silu":
            gate = self._name("sigmoid")
            self.nodes.append(helper.make_node("Sigmoid", [x.name], [gate], name=gate))
            self.nodes.append(helper.make_node("Mul", [x.name, gate], [name], name=name))
        else:
            raise ValueError(f"unknown activation {kind!r}")
        return Tensor(name, x.channels, x.height, x.width)

    def _scalar(self, name: str, value: float) -> str:
        self.initializers.append(numpy_helper.from_array(np.array(value, dtype=np.float32), name))
        return name

    def pool(self, x: Tensor, kind: str, kernel: int, *, stride: int, padding: int = 0) -> Tensor:
        name = self._name(kind)
        op = {"max": "MaxPool", "avg": "AveragePool"}[kind]
        attrs: dict[str, Any] = {"kernel_shape": [kernel, kernel], "strides": [stride, stride]}
        attrs["pads"] = [padding] * 4
        if kind == "avg":
            attrs["count_include_pad"] = 1
        self.nodes.append(helper.make_node(op, [x.name], [name], name=name, **attrs))
        out_h = (x.height + 2 * padding - kernel) // stride + 1
        out_w = (x.width + 2 * padding - kernel) // stride + 1
        return Tensor(name, x.channels, out_h, out_w)

    def global_avg_pool(self, x: Tensor) -> Tensor:
        name = self._name("gap")
        self.nodes.append(helper.make_node("GlobalAveragePool", [x.name], [name], name=name))
        return Tensor(name, x.channels, 1, 1)

    def add(self, a: Tensor, b: Tensor) -> Tensor:
        name = self._name("add")
        self.nodes.append(helper.make_node("Add", [a.name, b.name], [name], name=name))
        return Tensor(name, a.channels, a.height, a.width)

    def mul(self, a: Tensor, b: Tensor) -> Tensor:
        name = self._name("mul")
        self.nodes.append(helper.make_node("Mul", [a.name, b.name], [name], name=name))
        return Tensor(name, a.channels, a.height, a.width)

    def concat(self, parts: list[Tensor]) -> Tensor:
        name = self._name("concat")
        self.nodes.append(helper.make_node("Concat", [p.name for p in parts], [name], name=name, axis=1))
        return Tensor(name, sum(p.channels for p in parts), parts[0].height, parts[0].width)

    def squeeze_excite(self, x: Tensor, squeeze_channels: int) -> Tensor:
        pooled = self.global_avg_pool(x)
        squeezed = self.conv(pooled, squeeze_channels, 1, act="silu")
        gate = self.conv(squeezed, x.channels, 1, act="sigmoid")
        return self.mul(x, gate)

    def classifier(self, x: Tensor, classes: int, output_name: str) -> str:
        """Flatten + fully connected layer to ``classes`` logits."""
        flat = self._name("flatten")
        self.nodes.append(helper.make_node("Flatten", [x.name], [flat], name=flat, axis=1))
        features = x.channels * x.height * x.width
        weight = self._weight("fc.w", (features, classes), fan_in=features)
        bias = self._bias("fc.b", classes)
        self.macs += features * classes
        self.nodes.append(helper.make_node("Gemm", [flat, weight, bias], [output_name], name="fc"))
        return output_name

    def finish(
        self, *, name: str, input_name: str, input_shape: tuple[int, int, int], output_name: str, classes: int
    ) -> onnx.ModelProto:
        """The model with a dynamic batch axis ``batch`` on input and output."""
        inputs = [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["batch", *input_shape])]
        outputs = [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["batch", classes])]
        graph = helper.make_graph(self.nodes, name, inputs, outputs, self.initializers)
        model = helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="edgetenant-zoo"
        )
        model.ir_version = 8  # readable by ONNX Runtime releases from 1.10 on
        return model
