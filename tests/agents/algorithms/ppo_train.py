"""A PPO run of the tiny model on ``ArftTestLength-v0`` (tests/agents/accelerate_train.py),
as a script: writes per process a digest of the policy's and of the critic's final weights.

    python tests/agents/algorithms/ppo_train.py OUT STEPS [--resume]
    accelerate launch --multi_gpu --num_processes 2 tests/agents/algorithms/ppo_train.py OUT 2
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from accelerate_train import small_config, weights_digest  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    import torch

    torch.set_num_threads(1)
    from agents.training import TrainConfig, Trainer

    parser = argparse.ArgumentParser()
    parser.add_argument("output")
    parser.add_argument("steps", type=int)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    values = small_config(args.output, args.steps).to_dict()
    for key in ("beta", "scale_advantages", "credit", "aggregation", "clip_high"):
        values.pop(key)
    values.update(algo="ppo", critic_learning_rate=1e-3, inner_epochs=2)
    trainer = Trainer(TrainConfig.from_dict(values), resume=args.resume)
    trainer.train()
    acc = trainer.accelerator
    rank = acc.process_index
    policy = weights_digest(acc.unwrap_model(trainer.train_model))
    critic = weights_digest(acc.unwrap_model(trainer.trained["critic"].module))
    (Path(args.output) / f"weights_rank{rank}.sha256").write_text(f"{policy} {critic}")
    print(f"rank {rank} of {acc.num_processes}: {policy} {critic}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
