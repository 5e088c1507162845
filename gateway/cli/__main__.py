"""``python -m gateway.cli``: what the supervisor and the tests start."""

import sys

from gateway.cli.main import main

sys.exit(main())
