"""``python -m sfauth``: the same as the ``sfauth`` command."""

import sys

from .cli import main

sys.exit(main())
