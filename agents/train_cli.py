"""Moved to :mod:`agents.cli.train`; re-exported here for one release
(``python -m agents.train_cli`` still runs ``arft train``)."""

from agents.cli.train import add_train_command, cmd_train, load_config_file, main, resolve_config

__all__ = ["add_train_command", "cmd_train", "load_config_file", "main", "resolve_config"]

if __name__ == "__main__":
    raise SystemExit(main())
