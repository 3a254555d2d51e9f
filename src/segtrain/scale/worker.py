"""A blockwise worker started by a launcher (``srun``, ``sbatch --wait``, ``ssh host``, ...):

    python -m segtrain.scale.worker JOB_DIR TASK_ID [OUTPUT_SPEC_JSON]

It connects to the daisy server named in ``DAISY_CONTEXT`` (set by :mod:`segtrain.scale.engine`
and passed on by the launcher's environment), then processes blocks until there are none left.
"""

from __future__ import annotations

import json
import sys
from segtrain.scale.blocks import block_function
from segtrain.scale.volumes import ArraySpec


def main(argv: list[str] | None = None) -> int:
    import daisy

    argv = sys.argv[1:] if argv is None else argv
    if len(argv) not in (2, 3):
        print("usage: python -m segtrain.scale.worker JOB_DIR TASK_ID [OUTPUT_SPEC_JSON]",
              file=sys.stderr)
        return 2
    output = ArraySpec(**json.loads(argv[2])) if len(argv) == 3 else None
    process = block_function(argv[0], argv[1], output)
    client = daisy.Client()
    while True:
        with client.acquire_block() as block:
            if block is None:
                return 0
            process(block)


if __name__ == "__main__":
    sys.exit(main())
