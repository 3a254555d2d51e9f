"""PyTorch's shared libraries are loaded by the C library's dlopen (outside the GIL) before the
warm-up thread imports torch, and the import then works on the libraries already loaded."""

import subprocess
import sys
import textwrap


def test_preload_loads_libtorch_without_importing_torch_and_import_reuses_it():
    script = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        from segtrain.plugin._compat import preload_torch_libraries

        assert "torch" not in sys.modules
        assert preload_torch_libraries() is True
        maps = Path("/proc/self/maps").read_text()
        assert "torch" not in sys.modules, "the preload imported torch"
        assert "libtorch_cpu" in maps and "_C." in maps, "libtorch was not mapped"
        import torch
        c_file = Path(torch._C.__file__).resolve()
        starts = {line.split()[0].split("-")[0] for line in Path("/proc/self/maps").read_text().splitlines()
                  if line.endswith(str(c_file)) and " 00000000 " in line}
        assert len(starts) == 1, f"torch._C mapped {len(starts)} times"
        assert float(torch.ones(3).sum()) == 3.0
        assert preload_torch_libraries() is False  # torch imported: nothing to do
        print("ok")
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("ok")
