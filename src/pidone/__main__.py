"""`python -m pidone` is the same program as the `pidone` console script."""

import sys

from pidone.cli import main

sys.exit(main())
