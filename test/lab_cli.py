"""
The lab's CLI (test/lab) as the integration test modules and the benchmarks that drive a lab
of their own call it, and the master's etcd admin certificate they read etcd with.
"""

import json
import os
import subprocess

from lab_pillar import CA_DIR

LAB = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lab")
# issued by etcd.admin on the CA server: what the etcd runner and these tests read etcd with
ADMIN_TLS = {"ca_file": CA_DIR + "/admin/ca.crt", "cert_file": CA_DIR + "/admin/client.crt",
             "key_file": CA_DIR + "/admin/client.key"}


def lab(*args, timeout=900):
    """test/lab ARGS...: the CompletedProcess, output captured as text."""
    return subprocess.run([LAB, *args], capture_output=True, text=True, timeout=timeout)


def salt(*args):
    """salt ARGS... against the lab master: {minion: return}."""
    res = lab("salt", "--out=json", "--static", *args)
    try:
        return json.loads(res.stdout)
    except json.JSONDecodeError:
        raise AssertionError("salt {}: {}\n{}".format(args, res.stdout, res.stderr)) from None
