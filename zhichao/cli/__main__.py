"""``python -m zhichao.cli``: the same as the ``zhichao`` command."""

import sys

from zhichao.cli import main

sys.exit(main())
