"""python -m minigan: see minigan/cli.py."""

import sys

from .cli import main

sys.exit(main())
