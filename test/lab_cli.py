"""
The lab's CLI (test/lab) as the integration test modules and the benchmarks that drive a lab
of their own call it, and the master's etcd admin certificate they read etcd with.
"""

import collections
import json
import os
import subprocess
import time

from lab_pillar import CA_DIR

LAB = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lab")
# issued by etcd.admin on the CA server: what the etcd runner and these tests read etcd with
ADMIN_TLS = {"ca_file": CA_DIR + "/admin/ca.crt", "cert_file": CA_DIR + "/admin/client.crt",
             "key_file": CA_DIR + "/admin/client.key"}


def lab(*args, timeout=900, input=None):
    """test/lab ARGS...: the CompletedProcess, output captured as text (``input``: stdin)."""
    return subprocess.run([LAB, *args], capture_output=True, text=True, timeout=timeout,
                          input=input)


def salt(*args):
    """salt ARGS... against the lab master: {minion: return}."""
    res = lab("salt", "--out=json", "--static", *args)
    try:
        return json.loads(res.stdout)
    except json.JSONDecodeError:
        raise AssertionError("salt {}: {}\n{}".format(args, res.stdout, res.stderr)) from None


def last_json(text):
    """The last JSON document of a CLI's output (salt-run --out=json prints its progress
    events as JSON documents before the return)."""
    decoder, found, index = json.JSONDecoder(), None, 0
    while True:
        start = min([i for i in (text.find("{", index), text.find("[", index)) if i >= 0],
                    default=-1)
        if start < 0:
            break
        try:
            found, index = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            index = start + 1
    if found is None:
        raise ValueError("no JSON in: " + text[-500:])
    return found


def step_errors(steps):
    """{state id: error} of an orchestration's failed steps: the runner's Error, or the
    traceback salt puts in ``return`` (a string) when a runner raised, or the comment."""
    def error(state):
        returned = (state.get("changes") or {}).get("return")
        if isinstance(returned, dict):
            returned = returned.get("Error")
        return returned if isinstance(returned, str) and returned else state.get("comment")

    return {sid.split("_|-")[1]: error(state) for sid, state in steps.items()
            if not state["result"]}


Orchestrated = collections.namedtuple("Orchestrated", "rc errors steps took res")


def orchestrate(sls, pillar, timeout=900):
    """salt-run state.orchestrate ``sls`` with ``pillar`` (a dict): its exit code, the errors
    of its failed steps (``step_errors``; a render error: {"render": [Salt's errors]}), its
    steps ({state id: return}), the seconds it took, and the CompletedProcess."""
    started = time.monotonic()
    res = lab("salt-run", "--out=json", "state.orchestrate", sls, "pillar=" + json.dumps(pillar),
              timeout=timeout)
    took = time.monotonic() - started
    try:
        steps = next(iter(last_json(res.stdout)["data"].values()))
    except (ValueError, KeyError, StopIteration, TypeError):
        raise AssertionError("orchestration {}: {}\n{}".format(sls, res.stdout, res.stderr)) from None
    if isinstance(steps, list):  # a render error
        return Orchestrated(res.returncode, {"render": steps}, {}, took, res)
    return Orchestrated(res.returncode, step_errors(steps), steps, took, res)


def build_cluster(lab_, members):
    """The lab's extension modules synced, the CA and the master's admin certificate, then a
    cluster of ``members`` by one highstate applied to them at once: each state checked."""
    assert lab_.run("sync").returncode == 0
    salt("*", "saltutil.refresh_pillar", "wait=True")
    ret = salt("master", "state.apply", "etcd.ca,etcd.admin")
    assert all(s["result"] for s in ret["master"].values()), ret
    ret = salt("-L", ",".join(members), "state.apply", "-t", "900")
    bad = [s["comment"] for states in ret.values() for s in states.values() if not s["result"]]
    assert not bad and len(ret) == len(members), bad or ret
