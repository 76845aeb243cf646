"""`python -m lambda_rules`: the lambda-zip command."""

import sys

from lambda_rules.lambda_zip.main import main

if __name__ == "__main__":
    sys.exit(main())
