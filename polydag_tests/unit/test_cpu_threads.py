import pytest

from polydag.core.ops.cpu_threads import configure_torch_threads, default_torch_threads


def test_small_machines_use_one_thread_larger_ones_half(monkeypatch):
    monkeypatch.delenv("POLYDAG_TORCH_THREADS", raising=False)
    assert default_torch_threads(2) == 1 and default_torch_threads(4) == 1
    assert default_torch_threads(16) == 8


def test_env_overrides_and_is_validated(monkeypatch):
    monkeypatch.setenv("POLYDAG_TORCH_THREADS", "3")
    assert default_torch_threads(2) == 3
    monkeypatch.setenv("POLYDAG_TORCH_THREADS", "0")
    with pytest.raises(ValueError, match="POLYDAG_TORCH_THREADS"):
        default_torch_threads(2)


def test_configure_sets_torch(monkeypatch):
    import torch

    before = torch.get_num_threads()
    try:
        assert configure_torch_threads(1) == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
