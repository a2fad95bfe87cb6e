"""`python -m robustok ...`: the `robustok` command."""

import sys

from robustok.entry import main

sys.exit(main())
