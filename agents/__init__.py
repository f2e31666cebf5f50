"""agents: policies, rollouts and trainers that drive any registered arft environment.

- :mod:`agents.policy` loads a vision-language (or text-only) model and its processor, renders
  the env conversation with the model's chat template, generates and scores tokens;
- :mod:`agents.images` resizes images and keeps each episode under an image-token budget;
- :mod:`agents.models.tiny` builds an offline tiny Qwen2.5-VL-architecture model;
- :mod:`agents.rollout` runs multi-turn episodes token-in/token-out against vector envs;
- :mod:`agents.training` is the on-policy loop (config, run folder, metrics, warm start) and
  :mod:`agents.algorithms` the algorithms it runs (GRPO), each with its config and loss;
- :mod:`agents.cli` is the ``arft`` command.

Importing this package does not import torch; its modules do.
"""

__all__: list[str] = []
