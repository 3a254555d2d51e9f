"""A U-Net for 2D or 3D with configurable feature maps, growth and per-level (anisotropic)
downsampling, same padding (output shape = input shape when the input is divisible by the total
downsampling), in the style of funlib's MTLSD U-Net."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def _conv(dims: int):
    return nn.Conv3d if dims == 3 else nn.Conv2d


class ConvBlock(nn.Sequential):
    def __init__(self, dims: int, cin: int, cout: int, kernel: Sequence[int], batch_norm: bool):
        layers: list[nn.Module] = []
        padding = tuple(k // 2 for k in kernel)
        norm = nn.BatchNorm3d if dims == 3 else nn.BatchNorm2d
        for i in range(2):
            layers.append(_conv(dims)(cin if i == 0 else cout, cout, tuple(kernel), padding=padding))
            if batch_norm:
                layers.append(norm(cout))
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class UNet(nn.Module):
    """Encoder/decoder with skip connections.

    Parameters
    ----------
    in_channels
        Input channels.
    num_fmaps
        Feature maps at the top level; level ``l`` has ``num_fmaps * fmap_inc_factor**l``.
    downsample_factors
        One factor per axis and level, e.g. ``[[1, 2, 2], [1, 2, 2], [2, 2, 2]]`` for anisotropic EM.
        Levels whose z factor is 1 use in-plane kernels (1, k, k) in 3D, as for anisotropic data.
    """

    def __init__(
        self,
        in_channels: int,
        num_fmaps: int,
        fmap_inc_factor: int,
        downsample_factors: Sequence[Sequence[int]],
        kernel_size: int = 3,
        batch_norm: bool = False,
    ):
        super().__init__()
        dims = len(downsample_factors[0]) if downsample_factors else 3
        self.dims = dims
        self.downsample_factors = [tuple(int(x) for x in f) for f in downsample_factors]
        levels = len(self.downsample_factors) + 1
        fmaps = [num_fmaps * fmap_inc_factor**level for level in range(levels)]

        def kernel(level: int) -> tuple[int, ...]:
            # anisotropic levels (before the first z-downsampling) convolve in-plane only
            if dims == 3 and self._z_is_coarse(level):
                return (1, kernel_size, kernel_size)
            return (kernel_size,) * dims

        self.down = nn.ModuleList()
        self.pool = nn.ModuleList()
        cin = in_channels
        for level in range(levels):
            self.down.append(ConvBlock(dims, cin, fmaps[level], kernel(level), batch_norm))
            cin = fmaps[level]
            if level < levels - 1:
                f = self.downsample_factors[level]
                pool = nn.MaxPool3d if dims == 3 else nn.MaxPool2d
                self.pool.append(pool(f, stride=f))
        self.up = nn.ModuleList()
        self.up_conv = nn.ModuleList()
        for level in reversed(range(levels - 1)):
            f = self.downsample_factors[level]
            self.up.append(nn.Upsample(scale_factor=tuple(float(x) for x in f), mode="nearest"))
            self.up_conv.append(ConvBlock(dims, fmaps[level + 1] + fmaps[level], fmaps[level], kernel(level),
                                          batch_norm))
        self.out_channels = fmaps[0]

    def _z_is_coarse(self, level: int) -> bool:
        """True while the voxel size in z still exceeds in-plane (no z-pooling so far, and the
        network downsamples z later): then a 3x3x3 kernel would mix distant sections."""
        factors = self.downsample_factors
        pooled_z = 1
        pooled_xy = 1
        for f in factors[:level]:
            pooled_z *= f[0]
            pooled_xy *= f[-1]
        total_z = 1
        total_xy = 1
        for f in factors:
            total_z *= f[0]
            total_xy *= f[-1]
        # anisotropy the network assumes: total_xy / total_z; at this level the remaining ratio
        return (total_xy / total_z) / (pooled_xy / pooled_z) > 1.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for level, block in enumerate(self.down):
            x = block(x)
            if level < len(self.pool):
                skips.append(x)
                x = self.pool[level](x)
        for up, conv in zip(self.up, self.up_conv):
            x = up(x)
            x = conv(torch.cat([skips.pop(), x], dim=1))
        return x
