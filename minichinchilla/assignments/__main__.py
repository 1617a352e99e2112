"""``python -m minichinchilla.assignments release|grade|list``."""
import sys

from .cli import main

sys.exit(main())
