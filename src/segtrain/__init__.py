"""napari-segtrain: train segmentation networks on your own images and tune the result."""

__version__ = "0.1.0"
