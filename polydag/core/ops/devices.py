"""Which CUDA devices this machine has, and how much memory each has free.

The GPU run launcher hands each GPU run one device from this inventory; ``polydag doctor``
reports the same inventory and memory. The inventory comes from, in order:

1. an explicit list (the launcher's ``devices`` config), e.g. ``["0", "1"]``;
2. ``CUDA_VISIBLE_DEVICES`` of the current process when it is set: a daemon started with
   ``CUDA_VISIBLE_DEVICES=2,3`` hands out only devices 2 and 3 (``""`` means none);
3. ``nvidia-smi --query-gpu=index``, which sees every GPU the driver sees without loading
   torch or creating a CUDA context;
4. ``torch.cuda.device_count()`` when nvidia-smi is absent (e.g. a container without the CLI).

Device ids are strings because they are what ``CUDA_VISIBLE_DEVICES`` takes (an index, or a
``GPU-…`` UUID). Nothing here imports torch unless steps 1–3 found nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field


@dataclass(frozen=True)
class DeviceInventory:
    devices: tuple[str, ...]
    """Device ids, in the order they are handed out."""
    source: str
    """Where the list came from: config | CUDA_VISIBLE_DEVICES | nvidia-smi | torch | none."""
    notes: tuple[str, ...] = field(default=())
    """Why earlier sources gave nothing (shown by the doctor and in launcher warnings)."""

    def describe(self) -> str:
        found = ", ".join(self.devices) if self.devices else "no CUDA device"
        extra = f" ({'; '.join(self.notes)})" if self.notes else ""
        return f"{found} [from {self.source}]{extra}"


@dataclass(frozen=True)
class GpuMemory:
    device: str
    name: str
    total_mib: float
    free_mib: float


class DeviceConfigError(ValueError):
    """A configured device list is malformed."""


def parse_device_list(value) -> tuple[str, ...]:
    """``["0", "1"]``, ``[0, 1]`` or ``"0,1"`` -> ``("0", "1")``; rejects blanks and duplicates."""
    if isinstance(value, str):
        items = [part.strip() for part in value.split(",")] if value.strip() else []
    else:
        items = [str(part).strip() for part in value]
    if any(not item for item in items):
        raise DeviceConfigError(f"device list {value!r} has an empty entry")
    duplicates = sorted({item for item in items if items.count(item) > 1})
    if duplicates:
        raise DeviceConfigError(f"device list {value!r} names device(s) {duplicates} twice")
    return tuple(items)


def _nvidia_smi(query: str, timeout_s: float) -> list[list[str]] | str:
    """Rows of ``nvidia-smi --query-gpu=<query>`` (csv), or a string saying why there are none."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return "nvidia-smi not found on PATH"
    try:
        done = subprocess.run(
            [exe, f"--query-gpu={query}", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    except subprocess.TimeoutExpired:
        return f"nvidia-smi did not answer within {timeout_s:.0f}s"
    if done.returncode != 0:
        return f"nvidia-smi failed (exit {done.returncode}): {done.stderr.strip()[:200]}"
    return [[cell.strip() for cell in line.split(",")] for line in done.stdout.splitlines() if line.strip()]


def _torch_device_count() -> int | str:
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - torch is a dependency
        return f"torch not importable: {exc}"
    if not torch.cuda.is_available():
        build = torch.version.cuda or "none (CPU-only build)"
        return f"torch {torch.__version__} sees no CUDA device (CUDA build: {build})"
    return torch.cuda.device_count()


def detect_devices(configured=None, *, use_torch: bool = True, timeout_s: float = 10.0) -> DeviceInventory:
    """The device inventory (see the module docstring for the order of sources)."""
    if configured is not None:
        return DeviceInventory(parse_device_list(configured), "config")
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return DeviceInventory(parse_device_list(env), "CUDA_VISIBLE_DEVICES")
    notes = []
    rows = _nvidia_smi("index", timeout_s)
    if isinstance(rows, list) and rows:
        return DeviceInventory(tuple(row[0] for row in rows), "nvidia-smi")
    notes.append(rows if isinstance(rows, str) else "nvidia-smi lists no GPU")
    if use_torch:
        count = _torch_device_count()
        if isinstance(count, int) and count > 0:
            return DeviceInventory(tuple(str(i) for i in range(count)), "torch", tuple(notes))
        notes.append(count if isinstance(count, str) else "torch sees 0 CUDA devices")
    return DeviceInventory((), "none", tuple(notes))


def gpu_memory(timeout_s: float = 10.0) -> list[GpuMemory] | str:
    """Total and free memory per GPU (nvidia-smi, else torch), or a string saying why none."""
    rows = _nvidia_smi("index,name,memory.total,memory.free", timeout_s)
    if isinstance(rows, list) and rows:
        return [GpuMemory(r[0], r[1], float(r[2]), float(r[3])) for r in rows]
    reason = rows if isinstance(rows, str) else "nvidia-smi lists no GPU"
    count = _torch_device_count()
    if not isinstance(count, int) or count == 0:
        return f"{reason}; {count if isinstance(count, str) else 'torch sees 0 CUDA devices'}"
    import torch

    out = []
    for index in range(count):
        free, total = torch.cuda.mem_get_info(index)
        out.append(GpuMemory(str(index), torch.cuda.get_device_name(index), total / 2**20, free / 2**20))
    return out
