"""Bridges from arft envs to other frameworks; today an OpenEnv server (``openenv``).

Nothing is imported here: each submodule imports its framework when it is imported, so
``import arft_envs`` stays light and needs none of them. Install with ``pip install
arft[serve]``.
"""
