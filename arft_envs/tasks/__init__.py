"""Task records, dataset loaders and synthetic generators.

- :mod:`.base`: the :class:`Task` record and the task-source protocol;
- :mod:`.rows`: reading dataset files and checking their rows;
- :mod:`.render`: drawing scenes of text, for the synthetic images;
- :mod:`.coding`: MAT-Coding (official files, degradations, the synthetic generator);
- :mod:`.search`: MAT-Search (official files, the synthetic worlds and their questions);
- :mod:`.multihop`: text-only multi-hop QA files (HotpotQA, 2Wiki, MuSiQue, Bamboogle).
"""

from arft_envs.errors import DatasetError
from arft_envs.tasks.base import Task, TaskSource

__all__ = ["DatasetError", "Task", "TaskSource"]
