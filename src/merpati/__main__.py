"""``python -m merpati``: the same as the ``merpati`` console script."""

import sys

from merpati.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
