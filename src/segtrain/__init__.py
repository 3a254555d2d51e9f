"""napari-segtrain: train segmentation networks on your own images and tune the result."""

__version__ = "0.1.0"

import os as _os
import sys as _sys

if _sys.platform == "darwin":  # Apple MPS: ops Metal lacks run on the CPU (torch reads this when imported)
    _os.environ.setdefault("PYTORCH_ENABLE_MPS_FALLBACK", "1")
