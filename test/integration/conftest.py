"""Integration tests: the formula on the lab (test/lab), systemd hosts h1..h3 and a salt-master.

The session's `lab` fixture brings a lab up (3 hosts; ETCD_LAB_RELEASE=trixie for Debian 13)
and takes it down at the end (ETCD_LAB_KEEP=1 leaves it up). A lab that is already up when the
session starts, a developer's, is used as it is and left up.
"""

import json as jsonlib
import os
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LAB = os.path.join(REPO, "test", "lab")
HOSTS = 3
DEFAULT_PILLAR = "/run/etcd-formula-lab/pillar"  # what `test/lab up` generates without --pillar


class Lab:
    """A running lab, driven through test/lab (so tests see what a developer sees)."""

    def __init__(self, owned):
        self.owned = owned  # this session brought it up and may take it down
        status = self.status()
        self.release = status["release"]
        self.hosts = sorted(status["hosts"], key=lambda h: int(h[1:]))
        self._ips = {h: v["ip"] for h, v in status["hosts"].items()}

    def run(self, *args, check=False, timeout=600):
        """test/lab ARGS...: the CompletedProcess, output captured as text."""
        res = subprocess.run([LAB, *args], capture_output=True, text=True, timeout=timeout)
        if check and res.returncode != 0:
            raise AssertionError(f"test/lab {' '.join(args)}: exit {res.returncode}\n"
                                 f"{res.stdout}\n{res.stderr}")
        return res

    def status(self):
        return jsonlib.loads(self.run("status", "--json", check=True).stdout)

    def _cli(self, tool, args, json):
        if not json:
            return self.run(tool, *args).stdout
        res = self.run(tool, "--out=json", *args)
        try:
            return jsonlib.loads(res.stdout)
        except jsonlib.JSONDecodeError:
            raise AssertionError(f"{tool} {' '.join(args)}: exit {res.returncode}, no JSON\n"
                                 f"{res.stdout}\n{res.stderr}") from None

    def salt(self, *args, json=True):
        """salt ARGS... against the lab master: {minion: return} (one document: --static)."""
        return self._cli("salt", ("--static", *args) if json else args, json)

    def salt_run(self, *args, json=True):
        return self._cli("salt-run", args, json)

    def salt_call(self, *args, json=True):
        """salt-call on the machine's own minion `master` (the CA server): {"local": return}."""
        return self._cli("salt-call", args, json)

    def exec(self, host, *cmd, check=False, timeout=600):
        """CMD in HOST: the CompletedProcess (exit code is the command's)."""
        return self.run("exec", host, "--", *cmd, check=check, timeout=timeout)

    def ip(self, host):
        return self._ips[host]

    def relaunch(self, hosts=HOSTS, pillar=None):
        """Make the session's lab one of HOSTS hosts with pillar_roots PILLAR (None: the lab's
        generated pillar, one cluster of h1..h3), bringing it up again on fresh hosts when it
        is not (a test module that needs a pillar of its own). A lab that already is so is
        kept; a developer's lab is never taken down: the test fails instead."""
        status = self.status()
        if status.get("pillar") == (pillar or DEFAULT_PILLAR) and len(status["hosts"]) >= hosts:
            return
        if not self.owned:
            pytest.fail(f"this test needs a lab of {hosts} hosts with pillar {pillar}; the lab "
                        f"that is up is a developer's (pillar {status.get('pillar')})")
        self.run("down", check=True)
        self.run("up", "--hosts", str(hosts), "--release", self.release,
                 *(("--pillar", pillar) if pillar else ()), check=True)
        self.__init__(owned=True)

    def down(self):
        if not self.owned:
            pytest.skip("the lab is a developer's, or ETCD_LAB_KEEP=1: not taking it down")
        self.run("down", check=True)


def pytest_configure(config):
    config.addinivalue_line("markers", "lab_teardown: takes the session's lab down; runs last")


def pytest_collection_modifyitems(config, items):
    # Stable sort: the tests that take the lab down go after every other test of the session.
    items.sort(key=lambda item: item.get_closest_marker("lab_teardown") is not None)


@pytest.fixture(scope="session")
def lab():
    if os.geteuid() != 0:
        pytest.skip("the lab needs root")
    release = os.environ.get("ETCD_LAB_RELEASE")
    status = jsonlib.loads(subprocess.run([LAB, "status", "--json"], check=True,
                                          capture_output=True, text=True).stdout)
    if status["up"]:
        if release and status["release"] != release:
            pytest.fail(f"a {status['release']} lab is up; ETCD_LAB_RELEASE={release}")
        if len(status["hosts"]) < HOSTS:
            pytest.fail(f"the lab that is up has fewer than {HOSTS} hosts")
        yield Lab(owned=False)
        return
    if status["leftovers"]:  # a crashed run's
        subprocess.run([LAB, "down"], check=True)
    keep = os.environ.get("ETCD_LAB_KEEP") == "1"
    try:
        subprocess.run([LAB, "up", "--hosts", str(HOSTS), "--release", release or "bookworm"],
                       check=True)
        yield Lab(owned=not keep)
    finally:
        if not keep:
            subprocess.run([LAB, "down"], check=True)


@pytest.fixture(scope="module")
def standard_lab(lab):
    """The session's lab with the lab's own pillar (cluster etcd of h1..h3), brought back to
    it if an earlier test module relaunched it with a pillar of its own."""
    lab.relaunch()
    return lab
