"""The rollout engine: masks, log-probs, groups, the image budget, text-only envs, vector modes,
third-party envs and serialisation — each with ``tiny`` and with ``tiny-qwen`` (Qwen's real
tokenizer and template; the ``policy`` fixture runs both)."""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import numpy as np
import pytest
import torch

import arft_envs  # noqa: F401
from agents.images import ImageBudget
from agents.policy import Generation, Policy
from agents.rollout import (
    RolloutConfig,
    collect,
    load_trajectories,
    make_envs,
    save_trajectories,
)

CODE = (
    "import cv2\nimg = cv2.imread('path_to_input_image.jpg')\n"
    "img = cv2.rotate(img, cv2.ROTATE_90_CLOCKWISE)\ncv2.imwrite('path_to_output_image.jpg', img)\n"
)
SCRIPT = [
    ("<think> The text runs sideways. </think>\n<problem> {'rotation90'} </problem>", "stop"),
    (f"<think> Rotate it back. </think>\n<code>\n```python\n{CODE}```\n</code>", "eos"),
    ("<think> Now it reads clearly. </think>\n<answer> STUDIO </answer>", "stop"),
]


class Scripted:
    """Stands in for ``Policy.generate``: returns the script's turns as if sampled.

    A turn finishing with ``"eos"`` also samples the EOS token, like a model that closes its
    turn itself; ``"stop"`` ends at the closing tag, like a stop string.
    """

    def __init__(self, policy: Policy, script):
        self.policy, self.script, self.calls = policy, list(script), 0

    def __call__(self, inputs, **kwargs):
        assert len(inputs) == 1
        text, reason = self.script[self.calls]
        self.calls += 1
        ids = self.policy.encode(text)
        if reason == "eos":
            ids = ids + [self.policy.eos_token_ids[0]]
        return [Generation(ids, [-0.5] * len(ids), text, reason)]


def run(
    policy, env_id, config=None, num_envs=2, groups=2, mode="sync", vector_kwargs=None, **env_kwargs
):
    if vector_kwargs is None:
        envs = make_envs(env_id, num_envs, mode, **env_kwargs)
    else:
        envs = gym.make_vec(
            env_id,
            num_envs=num_envs,
            vectorization_mode=mode,
            vector_kwargs=vector_kwargs,
            **env_kwargs,
        )
    try:
        config = config or RolloutConfig(check_retokenization=True)
        return collect(policy, envs, config, groups=groups)
    finally:
        envs.close()


def assert_logprobs_from_generation_match(policy, trajectories, temperature=1.0):
    fresh = policy.sequence_logprobs(
        [t.model_input() for t in trajectories],
        [t.assistant_mask for t in trajectories],
        temperature=temperature,
    )
    for t, lp in zip(trajectories, fresh, strict=True):
        mask = np.array(t.assistant_mask, dtype=bool)
        assert mask.any()
        np.testing.assert_allclose(np.array(lp)[mask], np.array(t.old_logprobs)[mask], atol=1e-4)
        assert not np.array(t.old_logprobs)[~mask].any()


# How each template opens a tool reply: tiny's own role, Qwen's <tool_response> in a user turn.
TOOL_OPENING = {
    "tiny": "\n<|im_start|>tool\n",
    "tiny-qwen": "\n<|im_start|>user\n<tool_response>\n",
}


def test_scripted_matcoding_episode_masks_and_tool_image(policy):
    opening = TOOL_OPENING[policy.name]
    policy = dataclasses.replace(policy)
    policy.generate = Scripted(policy, SCRIPT)
    [t] = run(policy, "MATCoding-v0", num_envs=1, groups=1)
    ids, mask = np.array(t.input_ids), np.array(t.assistant_mask)
    tok = policy.tokenizer
    im_end = tok.convert_tokens_to_ids("<|im_end|>")

    # The model's tokens are exactly the scripted turns, in place, and nothing else.
    assert t.actions == [text for text, _ in SCRIPT] and t.num_turns == 3
    expected = np.zeros_like(mask)
    for (start, end), (text, reason) in zip(t.turn_spans, SCRIPT, strict=True):
        want = policy.encode(text) + ([im_end] if reason == "eos" else [])
        assert ids[start:end].tolist() == want
        expected[start:end] = 1
    assert (mask == expected).all()
    # A turn that ended at its closing tag is closed by a prompt token; an EOS turn is not
    # closed twice.
    (s1, e1), (s2, e2), (s3, _) = t.turn_spans
    assert ids[e1] == im_end and mask[e1] == 0
    assert ids[e2 - 1] == im_end and ids[e2] != im_end
    # The repaired image came back in the tool turn, between turns 2 and 3, as mask-0 tokens.
    assert t.image_grid_thw.shape[0] == 2 and len(t.images) == 2
    image_tokens = ids == policy.image_token_id
    assert image_tokens.sum() == int(t.image_grid_thw.prod(-1).sum()) // 4
    assert image_tokens[e2:s3].sum() > 0 and not (image_tokens & (mask == 1)).any()
    between = tok.decode(ids[e2:s3].tolist())
    assert between.startswith(opening) and between.endswith("<|im_start|>assistant\n")
    # Rewards and final info come from the env, turn by turn.
    assert t.reward_components[0].keys() >= {"format", "problem"}
    assert t.reward_components[1].keys() >= {"format", "code"}
    assert t.rewards == [sum(c.values()) for c in t.reward_components]
    assert t.terminated and t.info["answer"] == "STUDIO" and "golds" in t.info
    assert t.retokenization == {"status": "exact", "turns": []}


def test_sampled_episodes_logprobs_groups_and_retokenization(policy):
    config = RolloutConfig(group_size=2, max_new_tokens=16, check_retokenization=True, seed=3)
    trajs = run(policy, "ToyImageTool-v0", config, num_envs=3, groups=3, max_turns=3)
    assert [(t.group, t.index) for t in trajs] == [
        (g, g * 2 + m) for g in range(3) for m in range(2)
    ]
    for g in range(3):
        a, b = trajs[2 * g : 2 * g + 2]
        assert a.task_id == b.task_id and a.task_id is not None
    assert len({t.task_id for t in trajs}) == 3
    for t in trajs:
        assert t.retokenization["status"] in ("exact", "explained")
        assert t.num_turns == len(t.rewards) == len(t.reward_components) >= 1
        assert t.terminated or t.truncated
    assert_logprobs_from_generation_match(policy, trajs)


def test_image_budget_holds_over_ten_turns_with_a_new_image_each_turn(policy):
    budget = 48  # ten images of 4..64 tokens each: older ones must shrink, then go
    policy = dataclasses.replace(policy, image_budget=ImageBudget(max_image_tokens=budget))
    config = RolloutConfig(max_new_tokens=6, check_retokenization=True, seed=0)
    trajs = run(policy, "ToyImageTool-v0", config, num_envs=2, groups=2, max_turns=10)
    for t in trajs:
        n_image_tokens = t.input_ids.count(policy.image_token_id)
        assert n_image_tokens <= budget
        assert n_image_tokens == int(t.image_grid_thw.prod(-1).sum()) // 4
        assert t.num_turns == 10 and len(t.image_slots) == 10
        assert {e["action"] for e in t.image_events} == {"downscale", "drop"}
        assert t.image_slots[-1]["size"] is not None  # the newest image is always shown
        assert t.stale_logprob_turns  # earlier turns saw a context the rule later changed
        assert "[image omitted: image budget]" in policy.tokenizer.decode(t.input_ids)
    # Stale turns were re-scored on the final context: everything matches a fresh pass.
    assert_logprobs_from_generation_match(policy, trajs)


def test_text_only_env(policy):
    trajs = run(
        policy,
        "ToyText-v0",
        RolloutConfig(max_new_tokens=8, check_retokenization=True),
        max_turns=3,
    )
    for t in trajs:
        assert t.pixel_values is None and t.image_grid_thw is None and not t.image_slots
    assert_logprobs_from_generation_match(policy, trajs)


def test_text_only_model_on_an_image_env(text_lm_checkpoint):
    policy = Policy.from_pretrained(text_lm_checkpoint, device="cpu")
    trajs = run(
        policy,
        "ToyImageTool-v0",
        RolloutConfig(max_new_tokens=8, check_retokenization=True),
        max_turns=2,
    )
    for t in trajs:
        assert t.pixel_values is None
        assert t.image_events and {e["action"] for e in t.image_events} == {"text_only"}
    assert_logprobs_from_generation_match(policy, trajs)


@pytest.mark.parametrize(
    "mode, vector_kwargs",
    [
        ("async", None),  # make_envs: autoreset disabled, no shared memory
        ("sync", {"autoreset_mode": "NextStep"}),  # gym.make_vec's default
        ("sync", {"autoreset_mode": "SameStep"}),
    ],
)
def test_vector_modes_give_the_same_episodes(policy, mode, vector_kwargs):
    config = RolloutConfig(group_size=2, max_new_tokens=8, seed=5)
    reference = run(policy, "ToyImageTool-v0", config, num_envs=2, groups=2, max_turns=2)
    other = run(
        policy,
        "ToyImageTool-v0",
        config,
        num_envs=2,
        groups=2,
        max_turns=2,
        mode=mode,
        vector_kwargs=vector_kwargs,
    )
    assert [t.input_ids for t in other] == [t.input_ids for t in reference]
    assert [t.rewards for t in other] == [t.rewards for t in reference]


def test_async_env_with_next_step_autoreset_is_refused(policy):
    envs = gym.make_vec(
        "ToyText-v0", num_envs=2, vectorization_mode="async", vector_kwargs={"shared_memory": False}
    )
    try:
        with pytest.raises(ValueError, match="autoreset_mode='Disabled'"):
            collect(policy, envs, groups=1)
    finally:
        envs.close()


def test_fewer_envs_than_episodes_and_a_full_context(policy):
    config = RolloutConfig(max_new_tokens=32, max_context_tokens=120, seed=1)
    trajs = run(policy, "ToyText-v0", config, num_envs=2, groups=5, max_turns=50)
    assert len(trajs) == 5
    for t in trajs:
        assert len(t.input_ids) <= 120
        assert t.truncated and "context_full" in t.flags


def test_trajectories_round_trip_through_jsonl(policy, tmp_path):
    trajs = run(policy, "ToyImageTool-v0", RolloutConfig(max_new_tokens=6), max_turns=2)
    path = save_trajectories(trajs, tmp_path / "episodes.jsonl")
    assert (tmp_path / "episodes_images").is_dir()
    loaded = load_trajectories(path, policy=policy)
    for a, b in zip(trajs, loaded, strict=True):
        assert a.input_ids == b.input_ids and a.assistant_mask == b.assistant_mask
        assert a.rewards == b.rewards and a.info == b.info and a.actions == b.actions
        assert torch.equal(a.image_grid_thw, b.image_grid_thw)
        torch.testing.assert_close(a.pixel_values, b.pixel_values)


def test_an_env_that_breaks_the_observation_contract_fails_clearly(policy):
    class Forgetful(gym.Env):
        def __init__(self):
            from arft_envs.spaces import Conversation, Utf8Text

            self.action_space, self.observation_space = Utf8Text(), Conversation()

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            msg = {"role": "user", "content": ({"type": "text", "text": "hi"},)}
            return {"messages": (msg,), "images": ()}, {}

        def step(self, action):
            msg = {"role": "tool", "content": ({"type": "text", "text": "only the new part"},)}
            return {"messages": (msg,), "images": ()}, 0.0, False, False, {}

    envs = gym.vector.SyncVectorEnv([Forgetful])
    with pytest.raises(ValueError, match="whole chat"):
        collect(policy, envs, RolloutConfig(max_new_tokens=4), groups=1)


class _NoTaskIds(gym.Wrapper):
    """A third-party env whose reset info names no task id."""

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        return obs, {k: v for k, v in info.items() if k != "task_id"}


@pytest.mark.parametrize("seed", [7, None])
def test_groups_share_a_task_without_task_ids(policy, seed):
    from toy_envs import ToyTextEnv

    envs = gym.vector.SyncVectorEnv([lambda: _NoTaskIds(ToyTextEnv(max_turns=1))] * 3)
    config = RolloutConfig(group_size=3, max_new_tokens=4, seed=seed)
    trajs = collect(policy, envs, config, groups=3)
    questions = [t.messages[1]["content"][0]["text"] for t in trajs]
    for g in range(3):
        assert len(set(questions[3 * g : 3 * g + 3])) == 1
        assert len({t.seed for t in trajs[3 * g : 3 * g + 3]}) == 1
    assert all(t.task_id is None for t in trajs)


@pytest.mark.parametrize("boxed", [True, False])
def test_info_values_are_not_cast_by_the_vector_env(policy, boxed):
    from toy_envs import ToyTextEnv

    from agents.rollout import WholeInfo

    class Components(ToyTextEnv):
        def __init__(self, value):
            super().__init__(max_turns=1)
            self.value = value

        def step(self, action):
            obs, _, terminated, truncated, info = super().step(action)
            info["reward_components"] = {"format": self.value}
            return obs, float(self.value), terminated, truncated, info

    wrap = WholeInfo if boxed else (lambda env: env)
    envs = gym.vector.SyncVectorEnv(
        [lambda: wrap(Components(1)), lambda: wrap(Components(0.5))],  # an int, then a float
        autoreset_mode=gym.vector.AutoresetMode.DISABLED,
    )
    trajs = collect(policy, envs, RolloutConfig(max_new_tokens=4, seed=0), groups=2)
    formats = [t.reward_components[0]["format"] for t in trajs]
    if boxed:  # what make_envs builds
        assert formats == [1, 0.5]
    else:  # gymnasium's batched info casts the float to the first env's int type
        assert formats == [1, 0]
