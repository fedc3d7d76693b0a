"""
Unit tests import the formula's Salt modules as plain modules (Salt's loader puts the dunders
in; pytest-salt-factories' ``configure_loader_modules`` does it here).
"""

import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
for folder in ("_utils", "_modules", "_states"):
    path = os.path.join(REPO, folder)
    if path not in sys.path:
        sys.path.insert(0, path)
