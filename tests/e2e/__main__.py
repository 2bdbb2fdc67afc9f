"""``python -m tests.e2e``."""

import sys

from tests.e2e.run import main

sys.exit(main())
