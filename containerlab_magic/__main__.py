"""`python -m containerlab_magic ...`: the same as the `containerlab-magic` command
(quick_cli.py, which hands everything but a quick `run` to cli.py)."""

import sys

from .quick_cli import main

sys.exit(main())
