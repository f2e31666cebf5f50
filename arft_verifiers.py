"""The id under which verifiers finds arft's plug-in (``vf-eval arft_verifiers ...``).

verifiers imports a plug-in id as a top-level module, so this module re-exports the adapter
in :mod:`arft_envs.integrations.verifiers` (its taskset, harness and env) under that name.
"""

from arft_envs.integrations.verifiers import *  # noqa: F403
from arft_envs.integrations.verifiers import __all__  # noqa: F401
