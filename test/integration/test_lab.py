"""The lab itself (test/lab): minions, systemd, the network rule, and a teardown that leaves
nothing. Only lab addresses are ever contacted; `ip route get` asks the kernel and sends nothing.
"""

import glob
import json
import os
import signal
import subprocess
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LAB = os.path.join(REPO, "test", "lab")
LAB_RUN = "/run/etcd-formula-lab"
# Preinstalled for this formula and later ones, never started by the image: package -> unit.
PACKAGED_SERVICES = {"etcd-server": "etcd", "postgresql": "postgresql", "patroni": "patroni",
                     "vip-manager": "vip-manager", "prometheus": "prometheus"}


def test_every_minion_answers_ping(lab):
    assert lab.salt("*", "test.ping") == {m: True for m in ["master", *lab.hosts]}


def test_hosts_run_systemd_in_nspawn(lab):
    grains = lab.salt("h*", "grains.item", "init", "virtual")
    assert grains == {h: {"init": "systemd", "virtual": "systemd-nspawn"} for h in lab.hosts}


def test_hosts_booted(lab):
    for host in lab.hosts:
        assert lab.exec(host, "systemctl", "is-system-running").stdout.strip() == "running"


def test_image_has_the_packages_and_enables_none_of_their_services(lab):
    res = lab.exec("h1", "dpkg-query", "-W", *PACKAGED_SERVICES, "etcd-client")
    assert res.returncode == 0, res.stderr
    etcd = dict(line.split("\t") for line in res.stdout.splitlines())["etcd-server"]
    assert etcd.startswith({"bookworm": "3.4.", "trixie": "3.5."}[lab.release])
    image = lab.status()["image"]
    wants = {unit for d in glob.glob(f"{image}/etc/systemd/system/*.wants")
             for unit in os.listdir(d)}
    assert "salt-minion.service" in wants
    assert not wants & {f"{unit}.service" for unit in PACKAGED_SERVICES.values()}


def test_host_reaches_a_port_of_another_host(lab):
    server = ("import socket; s = socket.create_server(('0.0.0.0', 9999)); "
              "c, _ = s.accept(); c.sendall(b'hello from h2'); c.close()")
    client = ("import socket, time\n"
              "for _ in range(50):\n"
              "    try:\n"
              f"        c = socket.create_connection(('{lab.ip('h2')}', 9999), timeout=2); break\n"
              "    except OSError: time.sleep(0.2)\n"
              "print(c.recv(100).decode())")
    listener = subprocess.Popen([LAB, "exec", "h2", "--", "python3", "-c", server])
    try:
        res = lab.exec("h1", "python3", "-c", client, timeout=60)
        assert res.stdout.strip() == "hello from h2", res.stderr
        assert listener.wait(timeout=10) == 0
    finally:
        if listener.poll() is None:
            listener.kill()


@pytest.mark.parametrize("outside", ["8.8.8.8", "10.78.0.5", "10.77.1.5"])
def test_hosts_route_nothing_outside_the_lab(lab, outside):
    res = lab.exec("h1", "ip", "route", "get", outside)
    assert res.returncode != 0
    assert "Network is unreachable" in res.stderr
    assert "default" not in lab.exec("h1", "ip", "route", "show").stdout


def test_machine_blackholes_the_lab_subnet_beyond_the_bridge(lab):
    on_bridge = subprocess.run(["ip", "route", "get", "10.77.0.200"], capture_output=True,
                               text=True)
    assert "dev etcdlab0" in on_bridge.stdout
    beyond = subprocess.run(["ip", "route", "get", "10.77.1.200"], capture_output=True,
                            text=True)
    assert beyond.returncode != 0, beyond.stdout  # a blackhole route: no way out
    blackholes = subprocess.run(["ip", "route", "show", "type", "blackhole"],
                                capture_output=True, text=True).stdout
    assert "blackhole 10.77.0.0/16" in blackholes


def test_up_refuses_while_a_lab_is_up(lab):
    res = lab.run("up")
    assert res.returncode != 0
    assert "a lab is up" in res.stderr
    assert lab.salt("*", "test.ping") == {m: True for m in ["master", *lab.hosts]}


def test_sync_brings_the_checkouts_extension_modules(lab):
    res = lab.run("sync")
    assert res.returncode == 0, res.stdout + res.stderr
    for kind in ("modules", "states", "utils"):
        ours = extension_files(kind)
        on_h1 = lab.exec("h1", "ls", f"/var/cache/salt/minion/extmods/{kind}").stdout.split()
        assert ours <= set(on_h1), kind
    runners = extension_files("runners")
    if runners:  # salt-run saltutil.sync_all: into the master's own cache
        assert runners <= set(os.listdir(f"{LAB_RUN}/master/var/cache/salt/master/extmods/runners"))


def extension_files(kind):
    """The checkout's _<kind>/*.py file names."""
    d = os.path.join(REPO, "_" + kind)
    return {f for f in os.listdir(d) if f.endswith(".py")} if os.path.isdir(d) else set()


def lab_leftovers():
    """Everything a lab makes on the machine that is still there."""
    found = []
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    found += [f"netns {line.split()[0]}" for line in netns.splitlines() if "etcdlab" in line]
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    found += [f"link {line.split(':')[1].strip()}" for line in links.splitlines()
              if "etcdlab" in line]
    routes = subprocess.run(["ip", "route", "show", "table", "all"], capture_output=True,
                            text=True).stdout
    found += [f"route {line}" for line in routes.splitlines() if "10.77." in line]
    for root in ("/sys/fs/cgroup", "/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified"):
        if os.path.isdir(f"{root}/etcd-formula-lab"):
            found.append(f"cgroup {root}/etcd-formula-lab")
    with open("/proc/self/mountinfo") as f:
        found += [f"mount {line.split()[4]}" for line in f
                  if "etcd-formula-lab" in line.split()[4] or "etcdlab" in line.split()[4]]
    # The lab's daemons: nspawn, the salt-master and the machine's minion, and what runs in a
    # host's cgroup (not CLI calls such as `test/lab salt-call`: someone else's, not the lab's).
    daemons = ("/run/netns/etcdlab", f"salt-master -c {LAB_RUN}", f"salt-minion -c {LAB_RUN}")
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{pid}/cgroup") as f:
                cgroups = f.read()
            with open(f"/proc/{pid}/stat") as f:
                zombie = f.read().rsplit(")", 1)[1].split()[0] == "Z"  # dead, not yet reaped
        except OSError:
            continue
        if zombie:
            continue
        if any(d in cmdline for d in daemons) or "/etcd-formula-lab/" in cgroups:
            found.append(f"process {pid} {cmdline[:80]}")
    found += [f"path {p}" for p in (LAB_RUN, LAB_RUN + ".lock") if os.path.exists(p)]
    found += [f"nspawn lock {p}" for p in glob.glob("/run/systemd/nspawn/locks/*")
              + glob.glob("/var/cache/etcd-formula/images/.#*.lck")]
    propagate = "/run/systemd/nspawn/propagate"
    if os.path.isdir(propagate):
        found += [f"path {propagate}/{h}" for h in os.listdir(propagate) if h.startswith("h")]
    return found


@pytest.mark.lab_teardown
def test_down_leaves_nothing_and_is_idempotent(lab):
    lab.down()
    assert lab_leftovers() == []
    assert subprocess.run([LAB, "down"]).returncode == 0
    assert lab_leftovers() == []


@pytest.mark.lab_teardown
def test_down_after_a_crash_leaves_nothing(lab):
    """A killed lab (launcher, master and minion SIGKILLed) is still taken down whole."""
    if not lab.owned:
        pytest.skip("the lab is not this session's to take down")
    subprocess.run([LAB, "up", "--hosts", "1", "--release", lab.release], check=True)
    try:
        with open(f"{LAB_RUN}/state.json") as f:
            state = json.load(f)
        for proc in (state["hosts"]["h1"]["nspawn"], state["master"], state["minion"]):
            os.kill(proc["pid"], signal.SIGKILL)
        time.sleep(1)
    finally:
        subprocess.run([LAB, "down"], check=True)
    assert lab_leftovers() == []


@pytest.mark.lab_teardown
def test_up_refuses_a_subnet_that_overlaps_a_route(lab):
    """A route of the machine into 10.77.0.0/16 (a blackhole here: it sends nothing) stops `up`
    before it makes anything."""
    if not lab.owned:
        pytest.skip("the lab is not this session's to take down")
    subprocess.run(["ip", "route", "add", "blackhole", "10.77.200.0/24"], check=True)
    try:
        res = subprocess.run([LAB, "up", "--hosts", "1"], capture_output=True, text=True)
    finally:
        subprocess.run(["ip", "route", "delete", "blackhole", "10.77.200.0/24"], check=True)
    assert res.returncode != 0
    assert "overlaps routes of this machine" in res.stderr
    assert lab_leftovers() == []
