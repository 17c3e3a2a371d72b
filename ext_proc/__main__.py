"""``python -m ext_proc`` runs the ``godel`` CLI."""

import sys

from ext_proc.cli import main

sys.exit(main())
