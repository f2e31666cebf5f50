"""arft_envs: Gymnasium environments where a (vision-)language model acts by writing text.

Importing this package registers every environment id with Gymnasium::

    import gymnasium as gym
    import arft_envs  # noqa: F401
    env = gym.make("MATCoding-v0")

``gym.make("arft_envs:MATCoding-v0")`` works without the import. This package never imports
torch; optional backends import lazily.
"""

from __future__ import annotations

from gymnasium.envs.registration import register, registry

__version__ = "0.1.0"

# id -> (entry point, default kwargs)
ENV_SPECS: dict[str, tuple[str, dict]] = {
    "MATCoding-v0": ("arft_envs.envs.mat_coding:MATCodingEnv", {}),
    "EasyMATCoding-v0": ("arft_envs.envs.mat_coding:make_easy_env", {}),
    "MATSearch-v0": ("arft_envs.envs.mat_search:MATSearchEnv", {}),
    "HotpotQA-v0": ("arft_envs.envs.multihop_qa:MultihopQAEnv", {"dataset": "hotpotqa"}),
    "2WikiMultihopQA-v0": ("arft_envs.envs.multihop_qa:MultihopQAEnv", {"dataset": "2wiki"}),
    "MuSiQue-v0": ("arft_envs.envs.multihop_qa:MultihopQAEnv", {"dataset": "musique"}),
    "Bamboogle-v0": ("arft_envs.envs.multihop_qa:MultihopQAEnv", {"dataset": "bamboogle"}),
}


def _register_all() -> None:
    for env_id, (entry_point, kwargs) in ENV_SPECS.items():
        if env_id not in registry:
            # The env enforces its own turn cap (truncated); no TimeLimit wrapper on top.
            register(id=env_id, entry_point=entry_point, kwargs=kwargs, disable_env_checker=True)


_register_all()

__all__ = ["ENV_SPECS", "__version__"]
