"""Train stable-baselines3's PPO on MATCoding-v0 seen as a classic RL problem, and compare it
with a random policy.

The text env becomes a one-decision task through arft's wrappers: ``DiscreteActions`` turns
seven fixed diagnosis turns (``<problem> {'blur'} </problem>``, …) into ``Discrete(7)``,
``ImageObservation`` shows the degraded image as a 48×48 ``Box``, and ``SingleTurn`` ends
each episode ``terminated`` after that one turn. The reward is the env's own (format +
diagnosis credit). Reported: mean reward and the share of episodes whose chosen degradation
is one the image really has, for a uniform random policy and for PPO's greedy policy, on the
same held-out seeds.

    python examples/sb3_ppo.py            # 8192 steps: ~1 min 45 s of one CPU thread;
                                          # measured: random 18.7 % → PPO 52.3 % correct
    python examples/sb3_ppo.py --steps 256 --eval-episodes 20   # a smoke run
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import numpy as np

import arft_envs  # noqa: F401
from arft_envs.wrappers import DiscreteActions, ImageObservation, SingleTurn

PROBLEMS = ("rotation90", "rotation180", "dark", "overexposure", "blur", "noise", "none")
DIAGNOSES = [f"<think>look</think><problem> {{'{p}'}} </problem>" for p in PROBLEMS]
EVAL_SEED = 1_000_000  # evaluation seeds start here, far from PPO's training seeds


def make_env(size: int = 48) -> gym.Env:
    """The one-turn discrete view of MATCoding-v0."""
    base = gym.make("MATCoding-v0", max_turns=1)
    return SingleTurn(ImageObservation(DiscreteActions(base, DIAGNOSES), size=size))


def evaluate(env: gym.Env, choose, episodes: int) -> tuple[float, float]:
    """Mean reward and correct-diagnosis rate of ``choose(obs) -> action`` on fixed seeds."""
    rewards, hits = [], []
    for i in range(episodes):
        obs, _ = env.reset(seed=EVAL_SEED + i)
        action = int(choose(obs))
        _, reward, terminated, truncated, info = env.step(action)
        assert terminated and not truncated
        truth = set(info.get("degradations") or ["none"])  # given at the episode's end
        rewards.append(reward)
        hits.append(PROBLEMS[action] in truth)
    return float(np.mean(rewards)), float(np.mean(hits))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=8192, help="PPO environment steps")
    parser.add_argument("--eval-episodes", type=int, default=300)
    parser.add_argument("--size", type=int, default=48, help="side of the observed image")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import torch
    from stable_baselines3 import PPO

    torch.set_num_threads(1)
    env = make_env(args.size)
    rng = np.random.default_rng(args.seed)
    random_reward, random_hits = evaluate(
        env, lambda obs: rng.integers(len(DIAGNOSES)), args.eval_episodes
    )
    n_steps = max(32, min(256, args.steps))
    model = PPO(
        "MultiInputPolicy",
        make_env(args.size),
        n_steps=n_steps,
        batch_size=min(64, n_steps),
        n_epochs=10,
        gamma=0.0,  # one decision per episode: no future to discount
        learning_rate=1e-3,
        seed=args.seed,
        verbose=0,
    )
    model.learn(total_timesteps=args.steps)
    trained_reward, trained_hits = evaluate(
        env, lambda obs: model.predict(obs, deterministic=True)[0], args.eval_episodes
    )
    print(f"PPO on MATCoding-v0 (one-turn discrete view), {args.steps} steps, "
          f"{args.eval_episodes} held-out episodes")  # fmt: skip
    print(f"random policy : mean reward {random_reward:.3f}, correct diagnosis {random_hits:.1%}")
    print(f"PPO greedy    : mean reward {trained_reward:.3f}, correct diagnosis {trained_hits:.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
