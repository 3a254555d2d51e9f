"""Process-level guards for running torch inside napari.

Mesa's OpenGL drivers (llvmpipe under Xvfb, radeonsi) load their own ``libLLVM``; triton, which
torch imports lazily (e.g. through ``torchvision.ops`` -> ``torch._dynamo``), bundles another
LLVM, and loading it after Mesa's crashes the process (a segmentation fault, not an exception).
segtrain never uses triton (no ``torch.compile``), so when Mesa's LLVM is already mapped and
triton is not yet imported, :func:`avoid_triton_llvm_clash` makes ``import triton`` fail cleanly
(torch then treats triton as absent). Set ``SEGTRAIN_ALLOW_TRITON=1`` to opt out.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

logger = logging.getLogger(__name__)


def llvm_loaded() -> bool:
    """Whether a libLLVM shared library is mapped into this process (Linux only)."""
    try:
        return "libLLVM" in Path("/proc/self/maps").read_text()
    except OSError:
        return False


def avoid_triton_llvm_clash() -> bool:
    """Block ``import triton`` if importing it now would crash; True when it was blocked."""
    if "triton" in sys.modules or os.environ.get("SEGTRAIN_ALLOW_TRITON"):
        return False
    if not llvm_loaded():
        return False
    sys.modules["triton"] = None  # `import triton` now raises ImportError
    logger.info("an OpenGL driver loaded libLLVM: triton disabled in this process to avoid a crash")
    return True
