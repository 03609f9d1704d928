"""``python -m wecom_async``: the same as the ``wecom-async`` command."""

from .cli import main

raise SystemExit(main())
