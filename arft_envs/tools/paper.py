"""The paper's four tools as :class:`~arft_envs.tools.base.Tool` objects: ``<problem>``,
``<code>``, ``<search>`` and ``<answer>``, with the paper's rewards (Visual-ARFT,
``shared/research/paper.md`` §3) exactly as the envs gave them before tools were objects.

They live together, not beside their backends, because what they add to a backend *is* the
paper: its once-per-episode reward rules, its format patterns and its tool messages. The
backends (:mod:`arft_envs.tools.sandbox`, :mod:`arft_envs.tools.search`) stay free of rewards;
this module is where a tool meets :mod:`arft_envs.rewards`, and the one file to read to see how
a real tool is written.

Each tool keeps its per-episode reward state (what was already rewarded) and reads the rest
from the env: ``task``, ``reward_mode``, ``action_tags``, ``images`` and, per family,
``sandbox``/``timeout_s`` (coding) or ``backend_for``/``k``/``max_result_chars``/``local``/
``planned_searches`` (search).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from arft_envs.actions import (
    Answer,
    FormatError,
    ToolCall,
    parse_code_body,
    parse_problem_body,
    parse_problem_set,
    parse_search_body,
)
from arft_envs.prompts import CODING_TIPS
from arft_envs.repair import RepairMeter
from arft_envs.rewards import (
    CODING_KINDS,
    PROBLEM_TYPES,
    code_reward,
    f1_set,
    format_reward,
    live_answer_components,
    live_search_components,
    problem_reward,
    retrieval_credit,
    search_query_reward,
    step_kind,
)
from arft_envs.tools.base import Tool, ToolOutcome

if TYPE_CHECKING:
    from arft_envs.core import AgenticEnv
    from arft_envs.tasks.base import Task

logger = logging.getLogger(__name__)

INPUT_NAME = "path_to_input_image.jpg"
OUTPUT_NAME = "path_to_output_image.jpg"
#: Seconds the env waits past the sandbox's own wall limit before it gives up on a code call
#: (the sandbox kills the code at its limit; this only catches a sandbox that itself hangs).
SANDBOX_GRACE_S = 10.0
#: The whole-call deadline of a search (every retry of a web backend included).
SEARCH_TIMEOUT_S = 30.0


def gold_plan(task: Task) -> list[str]:
    """The kinds of step of a coding task's gold trajectory (``problem``, ``code``, ``answer``)."""
    plan = task.meta.get("gold_plan")
    if plan is None:
        kinds = [step_kind(s, CODING_KINDS) for s in task.meta.get("gold_steps", ())]
        plan = [k for k in kinds if k] or ["problem", "code", "answer"]
    return list(plan)


# ----------------------------------------------------------------------------- <problem>


class ProblemTool(Tool):
    """``<problem>{'rotation90', 'dark'}</problem>``: diagnose the image's degradations.

    Runs nothing: it answers with the paper's tip for the next step. Reward, once per episode
    and only when the gold trajectory diagnoses: ``format`` (the paper's strict pattern) +
    ``problem`` (1 for the exact set, 0.5 for only the rotation of a rotation+X pair).
    """

    name = "problem"
    description = "Name every problem of the image, as a set of quoted names."
    parameters = {
        "type": "object",
        "properties": {
            "problems": {
                "type": "array",
                "items": {"type": "string", "enum": list(PROBLEM_TYPES)},
                "minItems": 1,
                "description": "Every problem of the image ('none' when it has none).",
            }
        },
        "required": ["problems"],
    }
    timeout_s = None  # pure and quick

    def __init__(self) -> None:
        self._rewarded = False

    def parse(self, body: str, tag: str) -> str | FormatError:
        return parse_problem_body(body, tag)

    def call_body(self, arguments) -> str:
        return "{" + ", ".join(f"'{name}'" for name in arguments["problems"]) + "}"

    def call_arguments(self, argument: str) -> dict[str, Any]:
        return {"problems": list(parse_problem_set(argument))}

    def reset(self, env: AgenticEnv) -> None:
        self._rewarded = False

    def run(self, call: ToolCall, env: AgenticEnv) -> ToolOutcome:
        predicted = parse_problem_set(call.argument)
        unknown = [p for p in predicted if p not in PROBLEM_TYPES]
        if unknown:
            text = (
                f"Unknown problem type(s) {unknown}. Choose from {set(PROBLEM_TYPES)}. "
                + CODING_TIPS["default"].format(problems=list(predicted))
            )
            return ToolOutcome(text, status="invalid_problem", detail=predicted)
        if "crop" in predicted:
            tip = CODING_TIPS["crop"]
        elif predicted == ("none",):
            tip = CODING_TIPS["none"]
        else:
            tip = CODING_TIPS["default"].format(problems=list(predicted))
        return ToolOutcome(tip, detail=predicted)

    def reward(self, call, outcome, action, env) -> dict[str, float]:
        if self._rewarded or "problem" not in gold_plan(env.task):
            return {"format": 0.0, "problem": 0.0}
        self._rewarded = True
        gold = sorted(env.task.meta.get("degradations", ()))
        predicted = parse_problem_set(call.argument)
        return {
            "format": format_reward(action, "problem", tags=env.action_tags),
            "problem": problem_reward(predicted, gold),
        }


# ----------------------------------------------------------------------------- <code>


class CodeTool(Tool):
    """``<code>```python …```</code>``: run OpenCV code on the newest image, in the sandbox.

    The code reads ``path_to_input_image.jpg`` (the newest image of the conversation) and
    writes ``path_to_output_image.jpg``, which becomes the newest image. Reward, only when the
    gold trajectory has a code step: ``format`` for the first code turn, + ``code`` once per
    episode (``live``: 1 for the first run that wrote an image — with the env's
    ``code_reward="improved"``, an image measurably closer to the clean one; ``paper``: the
    constant 0.9). Every call's repair (:mod:`arft_envs.repair`) is kept in ``last_repair``.
    Deadline: the sandbox's own wall limit plus :data:`SANDBOX_GRACE_S`.
    """

    name = "code"
    description = (
        f"Run Python (OpenCV) code that reads '{INPUT_NAME}' and saves the processed image "
        f"to '{OUTPUT_NAME}'."
    )
    parameters = {
        "type": "object",
        "properties": {"code": {"type": "string", "description": "The Python code to run."}},
        "required": ["code"],
    }

    def __init__(self) -> None:
        self._format_rewarded = False
        self._code_rewarded = False
        self._repair = RepairMeter()
        #: The last call's :func:`arft_envs.repair.repair_report` (``None``: no clean image).
        self.last_repair: dict[str, Any] | None = None

    def parse(self, body: str, tag: str) -> str | FormatError:
        return parse_code_body(body, tag)

    def call_body(self, arguments) -> str:
        code = arguments["code"]
        return code if "```" in code else f"\n```python\n{code.strip(chr(10))}\n```\n"

    def call_arguments(self, argument: str) -> dict[str, Any]:
        return {"code": argument}

    def reset(self, env: AgenticEnv) -> None:
        self._format_rewarded = False
        self._code_rewarded = False
        self._repair.reset()
        self.last_repair = None

    def deadline(self, env: AgenticEnv) -> float | None:
        sandbox = env.sandbox
        if getattr(sandbox, "level", None) == "none":
            return None  # in-process exec: its own alarm is the deadline, and needs this thread
        wall = getattr(env, "timeout_s", None)
        if wall is None:
            wall = getattr(getattr(sandbox, "limits", None), "wall_s", SEARCH_TIMEOUT_S)
        return float(wall) + SANDBOX_GRACE_S

    def run(self, call: ToolCall, env: AgenticEnv) -> ToolOutcome:
        result = env.sandbox.run(
            call.argument,
            files={INPUT_NAME: env.images[-1]},
            timeout_s=getattr(env, "timeout_s", None),
        )
        written = result.images.get(OUTPUT_NAME)
        ran_ok = result.status == "ok" and written is not None
        text = result.describe()
        if result.status == "ok" and written is None:
            text += (
                f"\nNo image was written to '{OUTPUT_NAME}'; the image is unchanged. "
                f"Save the processed image with cv2.imwrite('{OUTPUT_NAME}', img)."
            )
            status = "no_image"
        else:
            status = result.status
        if ran_ok:
            text += "\nThe processed image is attached above; it replaces the input from now on."
        images = (written,) if written is not None else ()
        return ToolOutcome(text, images, status, detail=ran_ok)

    def timeout_outcome(self, call: ToolCall, deadline_s: float, why: str) -> ToolOutcome:
        return ToolOutcome(
            f"Execution timed out: the sandbox did not answer within {deadline_s:g} s ({why}). "
            "The image is unchanged.",
            status="timeout",
            detail=False,
        )

    def reward(self, call, outcome, action, env) -> dict[str, float]:
        # the input is still the newest image here: the written one is appended after this
        written = outcome.images[0] if outcome.images else None
        self.last_repair = self._repair.measure(env.task, env.images[-1], written, OUTPUT_NAME)
        components = {"format": 0.0, "code": 0.0}
        if "code" not in gold_plan(env.task):
            return components
        if not self._format_rewarded:
            components["format"] = format_reward(action, "code", tags=env.action_tags)
        self._format_rewarded = True
        if not self._code_rewarded:
            if env.reward_mode == "paper":
                components["code"] = code_reward("paper")
                self._code_rewarded = True
            elif outcome.detail and self._repair_counts(env):
                components["code"] = code_reward("live", True)
                self._code_rewarded = True
        return components

    def _repair_counts(self, env: AgenticEnv) -> bool:
        """Whether this run's repair satisfies the env's ``code_reward`` rule: ``"ran"``
        (default) asks nothing more; ``"improved"`` asks ``last_repair["improved"]`` where the
        task has a clean image (without one it falls back to ``"ran"``)."""
        if getattr(env, "code_reward", "ran") != "improved" or self.last_repair is None:
            return True
        return bool(self.last_repair["improved"])


# ----------------------------------------------------------------------------- <search>


class SearchTool(Tool):
    """``<search>query</search>``: one query to the env's search backend; the top ``k``
    results come back as a numbered ``<information>`` block.

    Reward, for the first N searches of an episode (N: the gold trajectory's): ``format`` +
    ``query``: in ``paper`` mode the thresholded MiniLM similarity to the i-th gold query; in
    ``live`` mode retrieval credit for a new gold document when the backend searches the
    task's corpus, else the similarity to the best not-yet-credited gold query.
    """

    name = "search"
    description = "Search the web (or the task's corpus) with one text query."
    parameters = {
        "type": "object",
        "properties": {"query": {"type": "string", "description": "A text-only query."}},
        "required": ["query"],
    }
    timeout_s = SEARCH_TIMEOUT_S

    def __init__(self) -> None:
        self._searches = 0
        self._credited: set[int] = set()  # gold hops (or gold queries) already rewarded
        self._used: set[str] = set()  # documents that already earned a query reward

    def parse(self, body: str, tag: str) -> str | FormatError:
        return parse_search_body(body, tag)

    def reset(self, env: AgenticEnv) -> None:
        self._searches = 0
        self._credited = set()
        self._used = set()

    def run(self, call: ToolCall, env: AgenticEnv) -> ToolOutcome:
        from arft_envs.tools.search import SearchError, format_results, format_search_error

        try:
            results = list(env.backend_for(env.task).search(call.argument, env.k))
            return ToolOutcome(format_results(results, env.max_result_chars), detail=results)
        except SearchError as err:
            return ToolOutcome(format_search_error(err), status=err.kind, detail=[])
        except Exception as err:  # a third-party backend's bug must not end the run
            logger.warning("search backend raised %r", err, exc_info=True)
            return ToolOutcome(format_search_error(err), status="error", detail=[])

    def timeout_outcome(self, call: ToolCall, deadline_s: float, why: str) -> ToolOutcome:
        from arft_envs.tools.search import SearchError, format_search_error

        error = SearchError(f"the search did not finish within {deadline_s:g} s ({why}).")
        error.kind = "timeout"
        return ToolOutcome(format_search_error(error), status="timeout", detail=[])

    def reward(self, call, outcome, action, env) -> dict[str, float]:
        index = self._searches
        self._searches += 1
        planned = env.planned_searches(env.task)
        components = {"format": 0.0, "query": 0.0}
        if index < planned:
            components["format"] = format_reward(
                action, "search", task="search", tags=env.action_tags
            )
            components["query"] = self._query_reward(
                call.argument, outcome.detail or [], index, env
            )
        if env.reward_mode == "live":
            return live_search_components(components["format"], components["query"], index, planned)
        return components

    def _query_reward(self, query: str, results: list, index: int, env: AgenticEnv) -> float:
        golds = list(env.task.meta.get("gold_queries") or ())
        if env.reward_mode == "paper":
            if index >= len(golds):
                return 0.0
            return search_query_reward(query_similarity(query, golds[index]))
        gold_docs = env.task.meta.get("gold_docs")
        if gold_docs and env.local:
            urls = [r.url for r in results]
            return float(retrieval_credit(urls, gold_docs, self._used, self._credited) is not None)
        remaining = [i for i in range(len(golds)) if i not in self._credited]
        if not remaining:
            return 0.0
        for i in remaining:  # an exact gold query needs no model
            if " ".join(query.split()) == " ".join(golds[i].split()):
                self._credited.add(i)
                return 1.0
        from arft_envs.tools.search.semantic import query_similarities

        sims = query_similarities([query] * len(remaining), [golds[i] for i in remaining])
        best = int(np.argmax(sims))
        reward = search_query_reward(float(sims[best]))
        if reward > 0:
            self._credited.add(remaining[best])
        return reward


def query_similarity(query: str, gold: str) -> float:
    """MiniLM cosine similarity of two queries (``arft[semantic]``)."""
    from arft_envs.tools.search.semantic import query_similarity as similarity

    return similarity(query, gold)


# ----------------------------------------------------------------------------- <answer>


class AnswerTool(Tool):
    """``<answer>…</answer>``: the final answer; it ends the episode.

    Reward: ``format`` + ``answer``, token-set F1 against the gold answers (``live``: the
    evaluation metric, with F1 = 1 on exact match; ``paper``: the training F1 without that
    override). ``family="coding"`` checks the coding format and pays only when the gold
    trajectory answers; ``family="search"`` checks the search format.
    """

    name = "answer"
    description = "Give the final answer, as briefly as possible. This ends the episode."
    parameters = {
        "type": "object",
        "properties": {"answer": {"type": "string", "description": "The final answer."}},
        "required": ["answer"],
    }
    timeout_s = None
    terminal = True

    def __init__(self, family: str = "coding") -> None:
        if family not in ("coding", "search"):
            raise ValueError(f"family must be 'coding' or 'search', got {family!r}")
        self.family = family

    def run(self, call: Any, env: AgenticEnv) -> ToolOutcome:
        raise RuntimeError("the answer ends the episode; it is scored, not run")

    def reward(self, call: Answer, outcome, action, env) -> dict[str, float]:
        if self.family == "coding" and "answer" not in gold_plan(env.task):
            return {"format": 0.0, "answer": 0.0}
        if env.reward_mode == "paper":
            accuracy = max((f1_set(call.text, g) for g in env.task.answers), default=0.0)
        else:
            accuracy = outcome.detail["f1"]
        fmt = format_reward(action, "answer", task=self.family, tags=env.action_tags)
        if self.family == "search" and env.reward_mode == "live":
            return live_answer_components(fmt, accuracy)
        return {"format": fmt, "answer": accuracy}


def coding_tools() -> list[Tool]:
    """MATCoding-v0's tools, in the paper's order."""
    return [ProblemTool(), CodeTool(), AnswerTool("coding")]


def search_tools() -> list[Tool]:
    """The search envs' tools."""
    return [SearchTool(), AnswerTool("search")]
