"""Task records, dataset loaders and synthetic generators."""

from arft_envs.tasks.base import DatasetError, Task, TaskSource

__all__ = ["DatasetError", "Task", "TaskSource"]
