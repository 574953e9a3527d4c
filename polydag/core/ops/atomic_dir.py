"""Write a directory all at once: build it in a temporary sibling, then rename it into place.

Model and adapter directories are read by other processes (the Dagster UI, evaluation runs,
``PeftModel.from_pretrained``). A crash half-way through ``save_pretrained`` must never leave a
directory that looks complete, so writers fill a hidden temporary sibling and only a finished
directory is renamed to the final name (a rename within one file system is atomic).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_output_dir(out_dir: str | Path) -> Iterator[Path]:
    """Yield a temporary directory that becomes ``out_dir`` when the block exits cleanly.

    On an exception the temporary directory is removed and ``out_dir`` is left untouched. An
    existing ``out_dir`` is replaced: it is renamed aside, the new one renamed in, then the old
    one deleted, so at every instant ``out_dir`` is either the old or the new complete tree.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700
        if out_dir.exists():
            old = out_dir.parent / f".{out_dir.name}.old-{uuid.uuid4().hex[:8]}"
            os.rename(out_dir, old)
            os.rename(tmp, out_dir)
            shutil.rmtree(old)
        else:
            os.rename(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
