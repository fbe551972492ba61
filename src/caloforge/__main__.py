"""``python -m caloforge`` runs the command line (also used by torchrun)."""

import sys

from caloforge.cli import main

sys.exit(main())
