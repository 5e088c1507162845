"""leadgate: an affiliate lead-deduplication gateway."""

import os

from gateway.build import use_build

__version__ = "0.1.0"

#: How many modules run compiled (mypyc, setup.py): 0 for a plain Python build or with
#: ``LEADGATE_COMPILED=0``.
COMPILED_MODULES = use_build(os.environ)
