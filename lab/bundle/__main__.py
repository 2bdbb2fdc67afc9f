"""Entry point for ``python3 -m lab.bundle``."""

import sys

from lab.bundle.cli import main

sys.exit(main())
