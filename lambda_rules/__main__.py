"""`python -m lambda_rules`: the lambda-zip command."""

import sys

from lambda_rules.cli import main

if __name__ == "__main__":
    sys.exit(main())
