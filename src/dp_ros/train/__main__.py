"""`python -m dp_ros.train CONFIG.yaml [overrides]`."""

import sys

from dp_ros.train.cli import main

if __name__ == "__main__":
    sys.exit(main())
