"""Networks: a 3D U-Net with affinity (+ LSD) heads (MTLSD) and 2D models from
segmentation-models-pytorch, behind one interface (:class:`SegmentationModel`)."""

from segtrain.models.build import HeadSpec, SegmentationModel, build_model, head_specs
from segtrain.models.unet import UNet

__all__ = ["HeadSpec", "SegmentationModel", "UNet", "build_model", "head_specs"]
