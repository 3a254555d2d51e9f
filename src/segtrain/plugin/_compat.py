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


def preload_torch_libraries() -> bool:
    """Load PyTorch's shared libraries without holding the GIL; True when they were loaded.

    ``import torch`` loads libtorch (hundreds of MB of shared objects) inside the import machinery,
    which holds the GIL for the whole ``dlopen``: 0.2 s on a quiet machine, 1.2-1.5 s on a loaded
    one, during which napari's GUI thread cannot run (a frozen window while a panel opens). The
    C library's ``dlopen`` called through ctypes releases the GIL, so a background thread that
    calls this first leaves only the Python part of the import (which yields the GIL every few
    milliseconds) for ``import torch``; the later ``dlopen`` of the same files finds them loaded.
    Nothing of torch is imported here; any failure leaves the real import to report it.
    """
    import ctypes
    import importlib.util

    if "torch" in sys.modules or not sys.platform.startswith(("linux", "darwin")):
        return False
    try:
        spec = importlib.util.find_spec("torch")
        if spec is None or spec.origin is None:
            return False
        package = Path(spec.origin).parent
        libc = ctypes.CDLL(None)
        dlopen = libc.dlopen  # a foreign call: ctypes releases the GIL while it runs
        dlopen.restype = ctypes.c_void_p
        dlopen.argtypes = [ctypes.c_char_p, ctypes.c_int]
        # torch's own order and flags: its global dependencies RTLD_GLOBAL, then the extension
        # module with the interpreter's flags (the import then reuses the same handle)
        wanted = [(path, os.RTLD_GLOBAL | os.RTLD_NOW) for path in sorted((package / "lib").glob("libtorch_global_deps.*"))]
        wanted += [(path, sys.getdlopenflags()) for path in sorted(package.glob("_C.*.so"))[:1]]
        loaded = [bool(dlopen(str(path).encode(), flags)) for path, flags in wanted]
        return bool(loaded) and all(loaded)
    except (OSError, AttributeError, ValueError):
        logger.debug("preloading PyTorch's libraries failed", exc_info=True)
        return False
