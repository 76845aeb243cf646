"""`python -m lambda_rules.zipper`: the lambda-zip command line."""

import sys

from lambda_rules.zipper.cli import main

if __name__ == "__main__":
    sys.exit(main())
