"""The network of a BioImage.IO package: segtrain's model with its activations, returning one
tensor per output (what the spec's weights formats expect), and its TorchScript form.

:class:`ZooNetwork` is the ``ArchitectureFromLibraryDescr`` of packages segtrain writes: built from
the run's config (``config`` kwarg, a plain mapping), its ``state_dict`` keys are exactly those of
:class:`segtrain.models.SegmentationModel` (no wrapper or Lightning prefix), so a run's weights
load into either.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from segtrain.models.build import HeadSpec, SegmentationModel, build_model


def network_config(values: Mapping[str, Any]):
    """The segtrain config of a package's ``config`` kwarg (encoder weights never fetched)."""
    from segtrain.config import config_from_dict

    config = config_from_dict(dict(values))
    config.model.encoder_weights = None  # the package holds the trained encoder
    return config


class ZooNetwork(SegmentationModel):
    """:class:`SegmentationModel` whose ``forward`` returns the activated outputs, one tensor per
    head in head order (``(N, C_head, *spatial)``, float32)."""

    def __init__(self, config: Mapping[str, Any]):
        model = build_model(network_config(config))
        super().__init__(model.backbone, model.heads, model.divisor, model.head_layer, model.in_channels)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:  # type: ignore[override]
        activated = self.activate(super().forward(x))
        return tuple(activated[head.name] for head in self.heads)


class _Logits(nn.Module):
    """backbone + output layer: the part of a SegmentationModel traced for TorchScript."""

    def __init__(self, model: SegmentationModel):
        super().__init__()
        self.backbone = model.backbone
        self.head_layer = model.head_layer if model.head_layer is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head_layer(self.backbone(x))


class _Scripted(nn.Module):
    """Padding to the divisor, the traced network, cropping, per-head activation: scriptable, so
    the TorchScript file takes inputs of any size as :class:`ZooNetwork` does."""

    def __init__(self, traced: torch.jit.ScriptModule, heads: list[HeadSpec], divisor: tuple[int, ...]):
        super().__init__()
        self.net = traced
        self.divisor = [int(d) for d in divisor]
        self.starts = [0]
        for head in heads:
            self.starts.append(self.starts[-1] + int(head.channels))
        self.softmax = [head.softmax for head in heads]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        spatial = x.shape[2:]
        n = len(self.divisor)
        pad: list[int] = []
        padded = False
        fits = True
        for i in range(n):
            size = spatial[n - 1 - i]
            extra = (-size) % self.divisor[n - 1 - i]
            pad += [0, extra]
            if extra > 0:
                padded = True
            if extra >= size:
                fits = False
        if padded:
            x = nn.functional.pad(x, pad, mode="reflect" if fits else "replicate")
        y = self.net(x)
        if padded:
            if n == 3:
                y = y[:, :, :spatial[0], :spatial[1], :spatial[2]]
            else:
                y = y[:, :, :spatial[0], :spatial[1]]
        out: list[torch.Tensor] = []
        for i in range(len(self.softmax)):
            value = y[:, self.starts[i]:self.starts[i + 1]].float()
            out.append(torch.softmax(value, dim=1) if self.softmax[i] else torch.sigmoid(value))
        return out


def scripted_network(model: SegmentationModel, example: torch.Tensor) -> torch.jit.ScriptModule:
    """TorchScript of ``model`` (eval mode, CPU) returning the activated outputs in head order;
    ``example`` (``(1, C, *spatial)``, a multiple of the divisor) is what the inner network is
    traced with."""
    model = model.eval()
    with torch.no_grad():
        traced = torch.jit.trace(_Logits(model), example, check_trace=False)
    return torch.jit.script(_Scripted(traced, list(model.heads), model.divisor))


class ScriptedModel(nn.Module):
    """A TorchScript network (a package's ``torchscript`` weights) behind the interface of
    :class:`SegmentationModel`: ``forward`` gives ``{head: values}`` already activated, so
    :meth:`activate` passes them through."""

    def __init__(self, scripted: torch.jit.ScriptModule, heads: list[HeadSpec], divisor: tuple[int, ...],
                 in_channels: int):
        super().__init__()
        self.scripted = scripted
        self.heads = list(heads)
        self.divisor = tuple(divisor)
        self.in_channels = in_channels

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {head.name: value for head, value in zip(self.heads, self.scripted(x))}

    def activate(self, outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {name: value.float() for name, value in outputs.items()}
