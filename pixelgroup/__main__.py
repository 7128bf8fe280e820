"""``python -m pixelgroup`` (also what ``torchrun -m pixelgroup train ...`` runs)."""

import sys

from pixelgroup.cli import main

sys.exit(main())
