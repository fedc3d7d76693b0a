"""Shared by the three test tiers: test/unit, test/functional, test/integration.

Each tier runs alone (`pytest test/unit`), and each test carries its tier as a marker, so
`pytest test -m "not integration"` runs all but the lab tier.
"""

import os
import sys

TEST_DIR = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TEST_DIR)
TIERS = {
    "unit": "loader mocks, no processes (seconds)",
    "functional": "real etcd processes on loopback or in a namespace, no lab",
    "integration": "the lab (test/lab): systemd hosts and a salt-master; needs root",
}

# Helpers shared by the tiers are imported as `import <module>` from test/.
if TEST_DIR not in sys.path:
    sys.path.insert(0, TEST_DIR)


def pytest_configure(config):
    for tier, what in TIERS.items():
        config.addinivalue_line("markers", f"{tier}: {what}")


def pytest_collection_modifyitems(config, items):
    for item in items:
        tier = os.path.relpath(str(item.path), TEST_DIR).split(os.sep)[0]
        if tier in TIERS:
            item.add_marker(tier)
