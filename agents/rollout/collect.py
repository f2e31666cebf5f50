"""How a rollout is *gathered*: :func:`collect` runs ``groups × group_size`` episodes on a
``gym.make_vec`` env (sync or async), token-in/token-out.

It generates one batched turn for all live episodes at a time and starts the next episode in a
slot as soon as the slot is free. The ``group_size`` episodes of a group share a task: the first
one's reset reports ``info["task_id"]`` and the others reset with ``options={"task_id": ...}``
(an env without task ids gets the same reset seed instead).

The loop is three steps over a slot table (:class:`_Collection`): start an episode in each free
slot, generate one turn for the live slots (ending those at the turn cap or a full context),
and step the vector env and record each reply.

**Action formats.** What a turn is and where it stops come from the env (:class:`EnvActions`):
an env in ``action_format="tags"`` stops a turn at the closing tag of any of its tools (its
``action_tags``, user tools included); an env in ``"tool_calls"`` (an ``AssistantTurn`` action
space) has its ``tool_schemas`` rendered through the template's ``tools=``, a turn stops where
the model's family closes a call (``</tool_call>``), and the family's parser turns the text
into the assistant message the env takes (:meth:`agents.policy.Policy.tool_calling`, which
audits the template first). The token sequence is the same token-in/token-out one either way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from agents.policy import ACTION_STOP_STRINGS, Generation, ModelInput, Policy, ToolCalling
from agents.rollout.config import SAFETY_MAX_TURNS, RolloutConfig
from agents.rollout.episode import EpisodeBuilder
from agents.rollout.trajectory import Trajectory
from agents.rollout.vector import _autoreset_mode, _env_id, _reset_one, _slot_info

IDLE_ACTION = ""


def collect(
    policy: Policy,
    envs,
    config: RolloutConfig | None = None,
    *,
    groups: int | None = None,
    task_ids: Sequence[str] | None = None,
    env_id: str | None = None,
) -> list[Trajectory]:
    """Run ``groups × config.group_size`` episodes and return them ordered by group.

    ``envs`` is a Gymnasium vector env (``gym.make_vec``, sync or async) whose observations
    follow the arft contract. ``task_ids`` fixes each group's task (``len(task_ids)`` groups);
    otherwise the first reset of group g picks its task (episode i resets with seed
    ``config.seed + i``).
    """
    config = config or RolloutConfig()
    groups = _group_count(groups, task_ids)
    env_id = env_id or _env_id(envs)
    same_step = _same_step_autoreset(envs)
    actions = EnvActions.of(policy, envs, config)  # audits a tool-calling template first
    if config.seed is not None:
        torch.manual_seed(config.seed)
    run = _Collection(policy, envs, config, env_id, groups, task_ids, same_step, actions)
    while run.fill_slots():
        live, generations = run.generate()
        if live:
            run.step(live, generations)
    return [run.results[k] for k in sorted(run.results)]


@dataclass(frozen=True)
class EnvActions:
    """How the policy's turns become the env's actions: ``stop_strings`` end a turn, ``tools``
    (function schemas, or None in tag mode) go to the template, and :meth:`action` turns a
    generated text into what ``env.step`` takes."""

    action_format: str
    stop_strings: tuple[str, ...]
    tools: tuple[dict, ...] | None = None
    calling: ToolCalling | None = None

    @classmethod
    def of(cls, policy: Policy, envs, config: RolloutConfig) -> EnvActions:
        """Read the env's action format (from its action space), tool schemas and action
        tags; ``config.stop_strings``, when set, overrides the env's."""
        from arft_envs.spaces import AssistantTurn

        space = getattr(envs, "single_action_space", None)
        if isinstance(space, AssistantTurn):
            schemas = _sub_env_attr(envs, "tool_schemas")
            if not schemas:
                raise ValueError(
                    f"{_env_id(envs)}: an env in action_format='tool_calls' must publish its "
                    "tools as env.unwrapped.tool_schemas"
                )
            calling = policy.tool_calling(schemas)
            stops = calling.stop_strings if config.stop_strings is None else config.stop_strings
            return cls("tool_calls", tuple(stops), calling.tools, calling)
        stops = config.stop_strings
        if stops is None:
            tags = _sub_env_attr(envs, "action_tags")
            stops = tuple(f"</{t}>" for t in tags) if tags else ACTION_STOP_STRINGS
        return cls("tags", tuple(stops))

    def action(self, text: str) -> Any:
        return self.calling.action(text) if self.calling is not None else text


def _sub_env_attr(envs, name: str) -> Any:
    """Attribute ``name`` of the first sub-env (through its wrappers), or None where it has
    none. An async vector env is asked only when its env class declares the attribute: a
    missing one would shut the worker down."""
    if isinstance(envs, gym.vector.AsyncVectorEnv):
        from gymnasium.envs.registration import load_env_creator

        entry = getattr(getattr(envs, "spec", None), "entry_point", None)
        try:
            creator = load_env_creator(entry) if isinstance(entry, str) else entry
        except (ImportError, AttributeError):
            return None
        if creator is None or not hasattr(creator, name):
            return None
    try:
        return envs.get_attr(name)[0]
    except AttributeError:
        return None


def _group_count(groups: int | None, task_ids: Sequence[str] | None) -> int:
    if task_ids is not None:
        groups = len(task_ids) if groups is None else groups
        if groups > len(task_ids):
            raise ValueError(f"{groups} groups asked for but only {len(task_ids)} task ids given")
    if groups is None or groups < 0:
        raise ValueError("give groups= (a count) or task_ids=")
    return groups


def _same_step_autoreset(envs) -> bool:
    """Whether the vector env resets a finished sub-env in the same step; refuse the one setting
    a rollout cannot drive."""
    mode = _autoreset_mode(envs)
    if (
        mode == "NextStep"
        and isinstance(envs, gym.vector.AsyncVectorEnv)
        and not envs.shared_memory
    ):
        # gymnasium 1.x: such a worker keeps its autoreset flag through a partial reset, so the
        # step after it would silently be a reset.
        raise ValueError(
            "an AsyncVectorEnv without shared memory must use autoreset_mode='Disabled' for "
            "rollouts; build it with agents.rollout.make_envs or pass vector_kwargs="
            "{'shared_memory': False, 'autoreset_mode': 'Disabled'} to gym.make_vec"
        )
    return mode == "SameStep"


class _Collection:
    """The slot table of one :func:`collect` call: the episode each sub-env runs, whether the
    sub-env must be reset before its next step, the episodes still to start, each group's task
    (or seed), and the finished trajectories by ``(group, index)``."""

    def __init__(
        self,
        policy: Policy,
        envs,
        config: RolloutConfig,
        env_id: str,
        groups: int,
        task_ids: Sequence[str] | None,
        same_step: bool,
        actions: EnvActions,
    ):
        self.policy, self.envs, self.config, self.env_id = policy, envs, config, env_id
        self.actions = actions
        self.same_step = same_step
        self.num_envs = int(envs.num_envs)
        self.pending = [(g, m) for g in range(groups) for m in range(config.group_size)]
        self.pending.reverse()
        self.group_task: dict[int, Any] = (
            {g: task_ids[g] for g in range(groups)} if task_ids else {}
        )
        self.group_seed: dict[int, int | None] = {}
        self.slots: list[EpisodeBuilder | None] = [None] * self.num_envs
        self.needs_reset = [True] * self.num_envs  # the sub-env's episode is over (or never began)
        self.results: dict[tuple[int, int], Trajectory] = {}
        self.max_context = config.max_context_tokens or policy.max_length
        self.turn_cap = min(config.max_turns or SAFETY_MAX_TURNS, SAFETY_MAX_TURNS)

    # -------------------------------------------------------------- start a slot

    def fill_slots(self) -> bool:
        """Start a pending episode in each free slot (an idle slot is still reset, since it
        must take steps); return whether any slot is live."""
        for i in range(self.num_envs):
            if self.slots[i] is None and self.pending:
                self.start(i, *self.pending.pop())
            elif self.slots[i] is None and self.needs_reset[i]:
                _reset_one(self.envs, i, None, {})
                self.needs_reset[i] = False
        return any(ep is not None for ep in self.slots)

    def start(self, i: int, group: int, member: int) -> None:
        """Reset sub-env ``i`` on the group's task and begin the episode there."""
        config = self.config
        index = group * config.group_size + member
        seed = None if config.seed is None else config.seed + index
        options: dict[str, Any] = {}
        if group in self.group_task:
            options["task_id"] = self.group_task[group]
        elif group in self.group_seed:  # the env names no task ids: the same seed, the same task
            seed = self.group_seed[group]
        elif seed is None and config.group_size > 1:
            seed = int(np.random.default_rng().integers(2**31))
        obs_i, info_i = _reset_one(self.envs, i, seed, options)
        if group not in self.group_task:
            if "task_id" in info_i:
                self.group_task[group] = info_i["task_id"]
            else:
                self.group_seed[group] = seed
        self.slots[i] = EpisodeBuilder(
            self.policy,
            config,
            obs_i,
            info_i,
            env_id=self.env_id,
            group=group,
            index=index,
            seed=seed,
            tools=self.actions.tools,
        )
        self.needs_reset[i] = False

    # -------------------------------------------------------------- generate for live slots

    def generate(self) -> tuple[list[int], list[Generation]]:
        """One turn for every live slot that has room; a slot at the turn cap or with a full
        context ends its episode instead. Returns the slots that generated and their turns."""
        inputs: list[tuple[ModelInput, int]] = []
        live: list[int] = []
        for i, ep in enumerate(self.slots):
            if ep is None:
                continue
            x = ep.model_input()
            room = self.max_context - len(x.input_ids)
            if ep.turn >= self.turn_cap or room < 1:
                ep.stop("max_turns" if ep.turn >= self.turn_cap else "context_full")
                self._finish(i, ep)
                self.needs_reset[i] = True  # abandon the env's episode
                continue
            inputs.append((x, room))
            live.append(i)
        if not live:
            return [], []
        config = self.config
        max_new = min(config.max_new_tokens, min(room for _, room in inputs))
        generations = self.policy.generate(
            [x for x, _ in inputs],
            max_new_tokens=max_new,
            temperature=config.temperature,
            top_p=config.top_p,
            stop_strings=self.actions.stop_strings,
            tool_calling=self.actions.calling,
            batch_size=config.generation_batch_size,
        )
        return live, generations

    # -------------------------------------------------------------- step and record

    def step(self, live: list[int], generations: list[Generation]) -> None:
        """Step every sub-env (idle ones with the empty action) and record each live reply."""
        actions = [IDLE_ACTION] * self.num_envs
        turn_of = dict(zip(live, generations, strict=True))
        for i, gen in turn_of.items():
            actions[i] = self.actions.action(gen.text)
        obs, rewards, terms, truncs, infos = self.envs.step(tuple(actions))
        for i in range(self.num_envs):
            done = bool(terms[i]) or bool(truncs[i])
            if i in turn_of:
                obs_i, info_i = obs[i], _slot_info(infos, i)
                if done and self.same_step:
                    obs_i = infos["final_obs"][i]
                    info_i = _slot_info(infos["final_info"], i)
                ep = self.slots[i]
                ep.record(turn_of[i], obs_i, rewards[i], terms[i], truncs[i], info_i)
                if done:
                    self._finish(i, ep)
            if done:
                self.needs_reset[i] = not self.same_step

    def _finish(self, i: int, ep: EpisodeBuilder) -> None:
        self.results[(ep.group, ep.index)] = ep.finish()
        self.slots[i] = None
