"""`python -m containerlab_magic ...`: the same as the `containerlab-magic` command (see cli.py)."""

import sys

from .cli import main

sys.exit(main())
