"""Course tooling: find, execute and check the course notebooks, build the book.

Used by the test suite (``tests/``) and by maintainers through the CLI,
``python -m coursetools --help``.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
