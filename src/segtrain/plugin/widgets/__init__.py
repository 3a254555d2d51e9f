"""Dock widgets. They connect signals and update layers; all computation lives in the core."""

from segtrain.plugin._compat import avoid_triton_llvm_clash

avoid_triton_llvm_clash()  # napari's OpenGL may have loaded Mesa's LLVM already
