"""`python -m node.cli ...`: the `bullyproof` command."""

import sys

from node.cli import main

sys.exit(main())
