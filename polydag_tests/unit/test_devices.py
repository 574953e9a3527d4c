"""The device inventory: configured, from CUDA_VISIBLE_DEVICES, from nvidia-smi, or none.

``nvidia-smi`` is an external program; where a test needs one, it puts a small script of that
name first on PATH that prints what the real tool prints for two H200s.
"""

import os
import stat

import pytest

from polydag.core.ops.devices import DeviceConfigError, detect_devices, gpu_memory, parse_device_list

FAKE_SMI = """#!/bin/sh
case "$*" in
  *memory*) echo "0, NVIDIA H200, 143771, 1024"; echo "1, NVIDIA H200, 143771, 140000";;
  *) echo 0; echo 1;;
esac
"""


@pytest.fixture
def fake_nvidia_smi(tmp_path, monkeypatch):
    def install(script: str = FAKE_SMI):
        exe = tmp_path / "bin" / "nvidia-smi"
        exe.parent.mkdir(exist_ok=True)
        exe.write_text(script)
        exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
        monkeypatch.setenv("PATH", f"{exe.parent}{os.pathsep}{os.environ['PATH']}")
        return exe
    return install


@pytest.fixture(autouse=True)
def no_cuda_env(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


def test_parse_device_list():
    assert parse_device_list(["0", 1]) == ("0", "1")
    assert parse_device_list("2, 3") == ("2", "3")
    assert parse_device_list("") == ()
    with pytest.raises(DeviceConfigError, match="twice"):
        parse_device_list(["0", "0"])
    with pytest.raises(DeviceConfigError, match="empty entry"):
        parse_device_list("0,,1")


def test_configured_list_wins(fake_nvidia_smi):
    fake_nvidia_smi()
    inventory = detect_devices(["1"])
    assert (inventory.devices, inventory.source) == (("1",), "config")
    assert detect_devices([]).devices == ()  # explicitly none


def test_cuda_visible_devices_limits_the_inventory(fake_nvidia_smi, monkeypatch):
    fake_nvidia_smi()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert detect_devices().devices == ("1",)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert detect_devices().devices == ()


def test_nvidia_smi_inventory_and_memory(fake_nvidia_smi):
    fake_nvidia_smi()
    inventory = detect_devices(use_torch=False)
    assert (inventory.devices, inventory.source) == (("0", "1"), "nvidia-smi")
    memory = gpu_memory()
    assert [(m.device, m.name, m.free_mib) for m in memory] == [
        ("0", "NVIDIA H200", 1024.0), ("1", "NVIDIA H200", 140000.0)]


def test_failing_nvidia_smi_is_reported(fake_nvidia_smi):
    fake_nvidia_smi("#!/bin/sh\necho 'NVIDIA-SMI has failed' >&2\nexit 9\n")
    inventory = detect_devices(use_torch=False)
    assert inventory.devices == () and inventory.source == "none"
    assert "exit 9" in inventory.notes[0] and "NVIDIA-SMI has failed" in inventory.notes[0]


def test_this_machine_without_gpu(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi anywhere
    inventory = detect_devices()
    import torch

    if torch.cuda.is_available():  # pragma: no cover - GPU machines
        assert inventory.source == "torch"
    else:
        assert inventory.devices == () and "nvidia-smi not found" in inventory.describe()
        assert isinstance(gpu_memory(), str)
