"""Tools an environment runs for the model.

- :mod:`arft_envs.tools.base` — what a tool is: :class:`Tool` (name, tags, JSON schema, run,
  deadline, reward) and :class:`ToolOutcome`. Start here to write your own.
- :mod:`arft_envs.tools.paper` — the paper's four tools (``<problem>``, ``<code>``,
  ``<search>``, ``<answer>``) written as such objects, with the paper's rewards.
- :mod:`arft_envs.tools.deadline` — the whole-call deadline the env puts on every call.
- :mod:`arft_envs.tools.sandbox` — the sandboxed Python interpreter behind ``<code>``.
- :mod:`arft_envs.tools.search` — the search backends behind ``<search>``.

Only :mod:`~arft_envs.tools.base` is imported here; the rest load when used.
"""

from arft_envs.tools.base import Tool, ToolOutcome

__all__ = ["Tool", "ToolOutcome"]
