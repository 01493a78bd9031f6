"""``python -m tdpmmu`` is the ``tdpmmu`` command."""

import sys

from .cli import main

sys.exit(main())
