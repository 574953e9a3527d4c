"""A training process the resume test kills with SIGKILL: trains a tiny λ adapter with
checkpoints in a work directory and prints each finished step (so the test can kill it at a
chosen step)."""

import json
import logging
import sys
from pathlib import Path

from polydag.core.polychromic.config import PolychromicTrainConfig
from polydag.core.polychromic.trainer import train_lora_adapter


def main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    pairs = [tuple(p) for p in spec["pairs"]]

    def announce(row):
        print(f"STEP {row['step']}", flush=True)

    result = train_lora_adapter(spec["base"], pairs, PolychromicTrainConfig.from_dict(spec["cfg"]), spec["out"],
                                work_dir=spec.get("work"), log_fn=announce, logger=logging.getLogger("probe"))
    print("RESULT " + json.dumps({"sha": result.adapter_sha256, "resumed_from": result.resumed_from_step}),
          flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
