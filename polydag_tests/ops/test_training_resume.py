"""Resume after a crash, for real: a training process is killed with SIGKILL at a random
step, run again, and must end with the adapter an uninterrupted run produces."""

import json
import os
import random
import signal
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from polydag.core.polychromic.base_model import build_default_base_model
from polydag.core.polychromic.config import BaseModelConfig
from polydag_tests.e2e.harness import REPO

MAX_STEPS = 12
CFG = {"diversity_weight": 1.0, "n_generations": 3, "max_examples_for_diversity": 2,
       "compute_diversity_every_n_steps": 2, "max_new_tokens": 8, "max_steps": MAX_STEPS,
       "per_device_train_batch_size": 4, "save_steps": 2, "save_total_limit": None, "device": "cpu",
       "lr_scheduler_type": "cosine", "warmup_ratio": 0.1}


def _pairs():
    rows = [json.loads(line) for line in (REPO / "data" / "reply_pairs.jsonl").read_text().splitlines()[:120]]
    return [(r["prompt"], r["reply"]) for r in rows]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    out = tmp_path_factory.mktemp("base") / "tiny"
    build_default_base_model(_pairs(), out, BaseModelConfig.tiny_for_tests(pretrain_steps=10))
    return out


def _spec(tmp_path, base, name, work):
    spec = tmp_path / f"{name}.json"
    spec.write_text(json.dumps({"base": str(base), "pairs": _pairs(), "cfg": CFG, "out": str(tmp_path / name),
                                "work": str(work) if work else None}))
    return spec


def _run(spec, kill_at=None):
    env = dict(os.environ, PYTHONPATH=str(REPO), POLYDAG_PROGRESS="0")
    proc = subprocess.Popen([sys.executable, "-m", "polydag_tests.ops.resume_probe", str(spec)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if kill_at is not None and line.strip() == f"STEP {kill_at}":
            os.killpg(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=300)
    result = [json.loads(line[7:]) for line in lines if line.startswith("RESULT ")]
    return proc.returncode, result[0] if result else None, "".join(lines)


def test_five_sigkill_trials_resume_to_the_uninterrupted_adapter(base, tmp_path):
    code, reference, log = _run(_spec(tmp_path, base, "reference", None))
    assert code == 0, log[-3000:]
    want = load_file(str(tmp_path / "reference" / "adapter_model.safetensors"))
    rng = random.Random(7)
    for trial in range(5):
        work = tmp_path / f"work-{trial}"
        kill_at = rng.randint(3, MAX_STEPS - 1)
        spec = _spec(tmp_path, base, f"trial-{trial}", work)
        code, _, log = _run(spec, kill_at=kill_at)
        assert code == -signal.SIGKILL, log[-2000:]
        code, result, log = _run(spec)
        assert code == 0, log[-3000:]
        assert 0 < result["resumed_from"] < MAX_STEPS and result["resumed_from"] <= kill_at
        got = load_file(str(tmp_path / f"trial-{trial}" / "adapter_model.safetensors"))
        diff = max(float((got[k] - want[k]).abs().max()) for k in want)
        assert diff <= 1e-6, f"trial {trial} (killed at step {kill_at}): max abs diff {diff}"
