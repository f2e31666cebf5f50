"""``python -m agents.cli …`` (and ``accelerate launch -m agents.cli train …``): the ``arft``
command."""

from agents.cli import main

raise SystemExit(main())
