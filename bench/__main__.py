"""python -m bench: run the benchmark (see bench/run.py)."""

import sys

from .run import main

sys.exit(main())
