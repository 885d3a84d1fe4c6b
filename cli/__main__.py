"""`python -m cli ...`, the same as `clinical-dp ...`."""

import sys

from cli.main import main

sys.exit(main())
