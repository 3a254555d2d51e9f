"""Build the network a config asks for: heads by task, padding to the downsampling divisor."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from segtrain.config import Config, divisor
from segtrain.errors import ConfigError
from segtrain.models.unet import UNet
from segtrain.tasks import task_of
from segtrain.targets import default_offsets


@dataclass(frozen=True)
class HeadSpec:
    """One output of a model: its name, channels and activation ("sigmoid" or "softmax")."""

    name: str
    channels: int
    activation: str

    @property
    def softmax(self) -> bool:
        """Whether the channels are one distribution (softmax), else each its own sigmoid."""
        return self.activation == "softmax"

    def activate(self, logits: torch.Tensor) -> torch.Tensor:
        """Probabilities of this head's logits ``(N, channels, *spatial)``."""
        return torch.softmax(logits, dim=1) if self.softmax else torch.sigmoid(logits)

    def logits_of(self, probabilities: torch.Tensor) -> torch.Tensor:
        """Logits whose :meth:`activate` gives ``probabilities`` back (to within 1e-6)."""
        return torch.log(probabilities.clamp_min(1e-12)) if self.softmax else torch.logit(probabilities, eps=1e-6)


def offsets_for(config: Config) -> list[tuple[int, ...]]:
    if config.model.offsets:
        return [tuple(o) for o in config.model.offsets]
    return [tuple(o) for o in default_offsets(config.ndim)]


def head_specs(config: Config) -> list[HeadSpec]:
    """The outputs a model built from ``config`` returns, in order."""
    m = config.model
    task = task_of(m)
    n_offsets = len(offsets_for(config)) if task.agglomerates else 0
    return [HeadSpec(*head) for head in task.heads(n_offsets, m.lsds, config.ndim, m.n_classes)]


class SegmentationModel(nn.Module):
    """A backbone plus one output layer per head.

    ``forward(x)`` takes ``(N, C, *spatial)`` of any spatial size (reflect-padded internally to a
    multiple of the total downsampling and cropped back) and returns ``{head: logits}``;
    :meth:`activate` turns logits into probabilities.
    """

    def __init__(self, backbone: nn.Module, heads: list[HeadSpec], divisor: tuple[int, ...],
                 head_layer: nn.Module | None, in_channels: int):
        super().__init__()
        self.backbone = backbone
        self.heads = list(heads)
        self.divisor = tuple(divisor)
        self.head_layer = head_layer
        self.in_channels = in_channels

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        spatial = x.shape[2:]
        pad = []
        for size, d in zip(reversed(spatial), reversed(self.divisor)):
            pad += [0, (-size) % d]
        if any(pad):
            mode = "reflect" if all(p < s for p, s in zip(pad[1::2], reversed(spatial))) else "replicate"
            x = F.pad(x, pad, mode=mode)
        y = self.backbone(x)
        if self.head_layer is not None:
            y = self.head_layer(y)
        if any(pad):
            y = y[(slice(None), slice(None), *(slice(0, s) for s in spatial))]
        out = {}
        start = 0
        for head in self.heads:
            out[head.name] = y[:, start:start + head.channels]
            start += head.channels
        return out

    def activate(self, logits: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = {}
        for head in self.heads:
            out[head.name] = head.activate(logits[head.name].float())
        return out


class Ensemble(nn.Module):
    """Networks of one shape side by side (``model.ensemble``), standing in for one network's logits.

    Training (``self.training``, a batch of ``n * b`` patches): member ``i`` sees the ``i``-th
    ``b`` patches alone, and the outputs are concatenated in that order, so a loss over the batch
    trains each member on its own patches as separate runs would (each its own initialisation; Adam
    steps each parameter alone). Predicting: every member sees the whole input and the result is
    the logits whose activation is the members' mean probability (sigmoid heads: the logit of the
    mean; softmax heads: the log of the mean), so :meth:`SegmentationModel.activate` and everything
    after it (TTA, tiling, a package's TorchScript) see the averaged probabilities.
    """

    def __init__(self, members: list[nn.Module], heads: list[HeadSpec]):
        super().__init__()
        self.members = nn.ModuleList(members)
        self.heads = list(heads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = len(self.members)
        if self.training:
            if x.shape[0] % n:
                raise ValueError(f"An ensemble of {n} trains on batches of a multiple of {n} patches, "
                                 f"one share per member, not {x.shape[0]}.")
            return torch.cat([member(part) for member, part in zip(self.members, x.chunk(n))])
        outputs = [member(x).float() for member in self.members]
        averaged, start = [], 0
        for head in self.heads:
            stop = start + head.channels
            mean = torch.stack([head.activate(y[:, start:stop]) for y in outputs]).mean(dim=0)
            averaged.append(head.logits_of(mean))
            start = stop
        return torch.cat(averaged, dim=1)


def build_model(config: Config) -> SegmentationModel:
    """The network for ``config`` (weights freshly initialised, or the encoder from a local file);
    with ``model.ensemble`` > 1, that many such networks behind one :class:`Ensemble`."""
    m = config.model
    heads = head_specs(config)
    out_channels = sum(h.channels for h in heads)
    if m.ensemble > 1:
        members = [nn.Sequential(*(part for part in _network(config, out_channels) if part is not None))
                   for _ in range(m.ensemble)]
        return SegmentationModel(Ensemble(members, heads), heads, divisor(config), None, config.data.in_channels)
    backbone, head_layer = _network(config, out_channels)
    return SegmentationModel(backbone, heads, divisor(config), head_layer, config.data.in_channels)


def _network(config: Config, out_channels: int) -> tuple[nn.Module, nn.Module | None]:
    """One network from the input to the logits of every head: the backbone, and the 3D U-Net's
    output layer (None for an smp model, which has its own)."""
    m = config.model
    if m.architecture == "unet3d":
        unet = UNet(config.data.in_channels, m.num_fmaps, m.fmap_inc_factor, m.downsample_factors,
                    m.kernel_size, m.batch_norm)
        return unet, nn.Conv3d(unet.out_channels, out_channels, 1)
    return _smp_model(config, out_channels), None


def _smp_model(config: Config, out_channels: int) -> nn.Module:
    import segmentation_models_pytorch as smp

    m = config.model
    weights = m.encoder_weights
    local = None
    if weights is not None and (Path(weights).suffix in (".pth", ".pt", ".bin", ".safetensors", ".ckpt")
                                or Path(weights).exists()):
        local = Path(weights)
        if not local.exists():
            raise ConfigError(f"model.encoder_weights file {local} does not exist; check the path or set it to null.")
        weights = None
    extra = {}
    if m.smp_architecture.lower() in ("unet", "unetplusplus"):
        extra["decoder_channels"] = (256, 128, 64, 32, 16)[: m.encoder_depth]
    try:
        model = smp.create_model(
            m.smp_architecture, encoder_name=m.encoder, encoder_weights=weights,
            in_channels=config.data.in_channels, classes=out_channels, encoder_depth=m.encoder_depth, **extra,
        )
    except (KeyError, ValueError) as error:
        text = str(error)
        if "encoder" in text.lower() or m.encoder in text:
            raise ConfigError(
                f"segmentation-models-pytorch has no encoder {m.encoder!r} (or no weights {weights!r} for it); "
                "pick one from smp.encoders.get_encoder_names(), e.g. resnet18."
            ) from None
        raise ConfigError(f"segmentation-models-pytorch cannot build {m.smp_architecture!r}: {text}.") from None
    except Exception as error:  # a download that cannot happen (no internet, proxy, ...)
        if weights is not None:
            raise ConfigError(
                f"Encoder weights {weights!r} would have to be downloaded, which failed ({type(error).__name__}); "
                "set model.encoder_weights to null or to a local weights file."
            ) from None
        raise
    if local is not None:
        _load_encoder_weights(model, local)
    return model


def _load_encoder_weights(model: nn.Module, path: Path) -> None:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    state = {k.removeprefix("encoder."): v for k, v in state.items()}
    encoder = model.encoder
    own = encoder.state_dict()
    matched = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not matched:
        raise ConfigError(
            f"Weights file {path} has no tensors that fit encoder {type(encoder).__name__}; "
            "use weights made for this encoder."
        )
    encoder.load_state_dict(matched, strict=False)
