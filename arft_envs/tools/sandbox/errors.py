"""Exceptions and warnings of the sandbox package."""


class SandboxError(RuntimeError):
    """The sandbox cannot be set up or used (not: the code failed; that is an ExecResult)."""


class SandboxWarning(UserWarning):
    """A sandbox level with weaker (or no) isolation was chosen."""
