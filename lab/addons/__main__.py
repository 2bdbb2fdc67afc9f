"""``python3 -m lab.addons``."""

from lab.addons.cli import main

raise SystemExit(main())
