"""
The membership layer: every rule about who is a member, who votes, what may be added or
removed, when a member may bootstrap a cluster, and the algorithms that carry them out over
the one client. The execution module (``etcd_cluster``) is its CLI surface; the states and
the runner call it directly (``__utils__["etcd_membership.<function>"]``).

- The pure decisions (no I/O) come first: ``find``, ``add_plan``, ``removal_refusal``,
  ``caught_up``, ``leader_candidate``, ``bootstrap_decision``, ``summarise``...
- Then the algorithms, each given a client (``connect``): ``health``, ``status``,
  ``survey``, ``add``, ``promote``, ``rollback_learner``, ``remove``, ``move_leader``.

Errors are ``etcd_errors`` classes; a refusal of the formula's own is ``EtcdUnsafe`` (or a
subclass) with a message saying why and what to do.
"""

import hashlib
import os
import struct
import sys
import time

from salt.exceptions import SaltInvocationError

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.append(_HERE)

import etcd_client  # noqa: E402
import etcd_errors as errors  # noqa: E402
import etcd_render  # noqa: E402
import etcd_settings  # noqa: E402

__virtualname__ = "etcd_membership"

# How often the waits below look again.
POLL_SECONDS = 0.25
# A member restarting (systemd's RestartSec=5s) plus an election: how long a final health
# check waits for a member to be back before it says the cluster is unhealthy.
SETTLE_SECONDS = 15


def __virtual__():
    if not etcd_client.HAS_ETCD3GW:
        return (False, "etcd_membership needs the etcd3gw Python package")
    return __virtualname__


def connect(endpoints, ca_file=None, cert_file=None, key_file=None, timeout=5, retry_timeout=60,
            credentials=None):
    """The one client (``etcd_client.connect``), for callers that go through this layer:
    ``credentials`` (user, password) for an etcd with authentication on; default, on a
    member, root's from its root credentials file (etcd/auth.sls writes it)."""
    return etcd_client.connect(
        endpoints, ca_file=ca_file, cert_file=cert_file, key_file=key_file,
        timeout=timeout, retry_timeout=retry_timeout,
        credentials=credentials or etcd_settings.local_root_credentials(),
    )


CONNECTION_ARGS = ("endpoints", "cluster", "ca_file", "cert_file", "key_file", "request_timeout")


def client_for(etcd_pillar, minion_id, **connection_args):
    """
    A client from Salt's connection arguments (``CONNECTION_ARGS``), the defaults filled in
    from the pillar as ``minion_id`` sees it: its cluster's members (or ``cluster``'s) as
    endpoints, a member's client certificate.
    """
    args = {k: v for k, v in connection_args.items() if not k.startswith("__") and v is not None}
    unknown = sorted(set(args) - set(CONNECTION_ARGS))
    if unknown:
        raise SaltInvocationError("unknown argument(s): {} (connection arguments: {})".format(
            ", ".join(unknown), ", ".join(CONNECTION_ARGS)))
    endpoints = args.get("endpoints")
    if not endpoints:
        if args.get("cluster"):
            try:
                cluster = etcd_settings.cluster_named(etcd_pillar, args["cluster"])
            except KeyError as exc:
                raise SaltInvocationError(exc.args[0]) from None
        else:
            cluster = etcd_settings.cluster_of(etcd_pillar, minion_id)
            if cluster is None:
                raise SaltInvocationError(
                    "minion {} is a member of no cluster in pillar etcd:clusters: pass "
                    "endpoints= or cluster=".format(minion_id))
        endpoints = etcd_settings.client_urls(cluster)
        if not endpoints:
            raise SaltInvocationError("etcd cluster {} has no members in pillar".format(
                cluster["name"]))
    tls = etcd_settings.client_tls_files()
    return connect(
        endpoints,
        ca_file=args.get("ca_file") or tls["ca_file"],
        cert_file=args.get("cert_file") or tls["cert_file"],
        key_file=args.get("key_file") or tls["key_file"],
        timeout=float(args.get("request_timeout") or 5),
    )


def probe_peers(peer_urls, ca_file, cert_file, key_file, timeout=2):
    """
    What each member's peer port says its cluster is (``etcd_client.peer_members``), for
    {minion: peer URL}: {minion: {"answer": {"cluster_id", "members"}} | {"refused": True}
    (nothing listens) | {"error": why} (a timeout, a TLS failure...)}. A member answers it
    without a leader or a quorum: what ``bootstrap_decision`` and ``removed_by`` read.
    """
    answers = {}
    for minion, peer_url in sorted(peer_urls.items()):
        try:
            answers[minion] = {"answer": etcd_client.peer_members(
                peer_url, ca_file, cert_file, key_file, timeout=timeout)}
        except errors.EtcdUnreachable as exc:
            answers[minion] = {"refused": True} if exc.refused else {"error": exc.message}
    return answers


# -- pure decisions (no I/O) ----------------------------------------------------------------------


def quorum(voter_count):
    return voter_count // 2 + 1


def voters(members):
    return [m for m in members if not m["is_learner"]]


def has_run(member):
    """Whether the member ever ran in this cluster: it published its client URLs then. (An
    initial member of a bootstrapping cluster has a name before it ever ran.)"""
    return bool(member.get("client_urls"))


def label(member):
    """A member as people know it: its name, or its ID and peer URLs before it first started."""
    if member.get("name"):
        return member["name"]
    return "{} ({}, never started)".format(member["id"], ",".join(member["peer_urls"]))


def find(members, ident):
    """The member whose ID (hex), name or peer URL is ``ident``, or None (an empty ``ident``
    finds nothing: a member that never started has no name)."""
    ident = str(ident or "")
    if not ident:
        return None
    for member in members:
        if ident in (member["id"], member["name"]) or ident in member["peer_urls"]:
            return member
    return None


def find_by_peer_urls(members, peer_urls):
    """The member having one of ``peer_urls``, or None (before it starts, etcd knows a member
    by its peer URLs only)."""
    if isinstance(peer_urls, str):
        peer_urls = [peer_urls]
    wanted = set(peer_urls)
    return next((m for m in members if wanted & set(m["peer_urls"])), None)


def require(members, ident):
    """The member ``ident`` (ID, name or peer URL), or EtcdMemberNotFound naming the members."""
    member = find(members, ident)
    if member is None:
        raise errors.EtcdMemberNotFound(
            "no etcd member {} (members: {})".format(
                ident, ", ".join(label(m) for m in members) or "none")
        )
    return member


def add_refusal(members, peer_urls, learner):
    """
    Why adding a member with ``peer_urls`` would be wrong now, or None. A member with
    these peer URLs is no refusal (the add already happened: it is resumed). The one policy
    for a pending learner of another host, started or not: refused, never removed behind
    its orchestration's back (it may be running); ``salt-run etcd.remove_learner`` ends it.
    """
    if find_by_peer_urls(members, peer_urls):
        return None
    unstarted = [m for m in members if not m["started"]]
    if unstarted:
        return (
            "member {} was added but never started: finish its add_member, or remove it "
            "(salt-run etcd.remove_learner <its minion>) first".format(label(unstarted[0]))
        )
    learners = [m for m in members if m["is_learner"]]
    if learner and learners:
        # etcd 3.4 and 3.5 allow one learner at a time
        return (
            "another learner is pending: {} ({}); etcd allows one at a time: finish its "
            "add_member or remove it (salt-run etcd.remove_learner <its minion>) first".format(
                label(learners[0]), ",".join(learners[0]["peer_urls"]))
        )
    return None


def add_plan(members, peer_url, data_dir):
    """
    What an add must do for the member with ``peer_url``, from the real membership and the
    new host's data dir (``data_dir``: ``{"entries": [...], "member": bool}``): ``"add"``
    (not a member yet), ``"resume"`` (its learner, from an earlier run), ``"done"`` (a
    voter already). EtcdUnsafe when another member is pending, or the data dir holds
    something that is not this running member's.
    """
    ours = find_by_peer_urls(members, [peer_url])
    refusal = add_refusal([m for m in members if m is not ours], [peer_url], learner=True)
    if refusal:
        raise errors.EtcdUnsafe(refusal)
    entries = data_dir.get("entries") or []
    if entries and not (ours is not None and ours["started"] and data_dir.get("member")):
        raise errors.EtcdUnsafe(
            "the data dir is not empty ({}) and belongs to no running member with peer URL "
            "{}: it holds an old or removed member, which can never rejoin; purge it "
            "(state.apply etcd.purge on that host, which archives it first) and run "
            "again".format(", ".join(sorted(entries)[:5]), peer_url)
        )
    if ours is None:
        return "add"
    return "resume" if ours["is_learner"] else "done"


def removal_refusal(members, target_id, healthy_ids):
    """
    Why removing member ``target_id`` would break the cluster, or None if it is safe.
    ``healthy_ids``: IDs of the members that answer a linearizable read now.
    """
    target = next(m for m in members if m["id"] == target_id)
    if target["is_learner"]:
        return None  # a learner has no vote
    voting = voters(members)
    if len(voting) == 1:
        return "{} is the last voting member: removing it destroys the cluster".format(
            label(target))
    if len(voting) == 2:
        return (
            "removing a member of a 2-member cluster is unsafe: if the other one fails "
            "during the change, the cluster cannot recover"
        )
    remaining = [m for m in voting if m["id"] != target_id]
    healthy_remaining = [m for m in remaining if m["id"] in healthy_ids]
    needed = quorum(len(remaining))
    if len(healthy_remaining) < needed:
        return (
            "removing {} would lose quorum: {} of the {} remaining voting members are "
            "healthy, {} are needed".format(
                label(target), len(healthy_remaining), len(remaining), needed)
        )
    return None


def caught_up(leader_raft_index, learner_status):
    """
    Whether a learner may be promoted: it answers status (it runs) and its raft index has
    reached the leader's, read before the learner's.
    """
    return learner_status is not None and learner_status["raft_index"] >= leader_raft_index


def leader_candidate(members, leader_id, healthy_ids, statuses):
    """The healthy voter, other than the leader, furthest ahead in the raft log; or None."""
    candidates = [
        m for m in voters(members)
        if m["id"] != leader_id and m["id"] in healthy_ids and m["started"]
    ]
    if not candidates:
        return None
    return max(candidates, key=lambda m: (statuses.get(m["id"]) or {}).get("raft_index", -1))


def clusters_seen(views):
    """{cluster id: [endpoint, ...]} of the endpoints that answered (``views``: {endpoint:
    {"status": ...} | {"error": ...}}, as ``survey`` gives them)."""
    seen = {}
    for endpoint, view in sorted(views.items()):
        status = view.get("status")
        if status:
            seen.setdefault(status["cluster_id"], []).append(endpoint)
    return seen


def split_message(seen, names=None):
    """The loud message for more than one cluster answering: which endpoints belong to which."""
    names = names or {}
    parts = [
        "cluster {}: {}".format(cid, ", ".join(names.get(e, e) for e in endpoints))
        for cid, endpoints in sorted(seen.items(), key=lambda item: -len(item[1]))
    ]
    return (
        "SPLIT: the pillar's endpoints answer for {} different clusters ({}): clients given "
        "these endpoints read and write different data. Stop the members of the cluster that "
        "must not exist (its data is not the one patroni wrote), purge them (state.apply "
        "etcd.purge, which archives first) and add them back with etcd.add_member".format(
            len(seen), "; ".join(parts))
    )


def summarise(members, member_health, alarms, leader_id, views=None):
    """
    The cluster's health from each member's: quorum, leader, learners, alarms, and (with
    ``views``, ``survey``'s answers) a split or a quorum loss diagnosed. ``healthy`` means
    one cluster, every voter answers, a leader and no alarm.
    """
    voting = voters(members)
    # a voter that serves reads counts for the quorum even under an alarm (NOSPACE takes
    # writes away, not the quorum): the alarm itself makes the cluster unhealthy below
    healthy_voters = [m for m in voting if (member_health.get(m["id"]) or {}).get(
        "serving", (member_health.get(m["id"]) or {}).get("healthy"))]
    needed = quorum(len(voting))
    leader = next((m for m in members if m["id"] == leader_id), None)
    summary = {
        "healthy": bool(voting) and len(healthy_voters) == len(voting) and leader is not None
        and not alarms,
        "quorum": {
            "voters": len(voting),
            "healthy_voters": len(healthy_voters),
            "needed": needed,
            "ok": len(healthy_voters) >= needed,
        },
        "leader": label(leader) if leader else None,
        "learners": [label(m) for m in members if m["is_learner"]],
        "alarms": ["{} on {}".format(a["alarm"], a["member_id"]) for a in alarms],
        "members": {
            label(m): dict(member_health.get(m["id"]) or {}, id=m["id"], is_learner=m["is_learner"])
            for m in members
        },
        "clusters": {},
        "split": False,
        "error": None,
    }
    if views is not None:
        seen = clusters_seen(views)
        summary["clusters"] = seen
        if len(seen) > 1:
            names = {e: v["status"].get("name", e) for e, v in views.items() if v.get("status")}
            summary.update(healthy=False, split=True, error=split_message(seen, names))
    if not summary["split"] and not summary["quorum"]["ok"]:
        summary["healthy"] = False
        summary["error"] = quorum_lost_message(summary["quorum"], views)
    return summary


def member_state(view):
    """A member's state as an operator reads it, from ``survey``'s view of its endpoint."""
    if view is None:
        return "not asked"
    status = view.get("status")
    if status:
        if status["is_learner"]:
            return "up (learner)"
        return "up, leader known" if int(status["leader"], 16) else "up without a leader"
    return "down (nothing listens)" if view.get("refused") else "unreachable: {}".format(
        view.get("error"))


def quorum_lost_message(quorum_state, views=None):
    """What a quorum loss looks like and what to do about it."""
    up = quorum_state["healthy_voters"]
    states = ""
    if views:
        states = " (" + "; ".join("{}: {}".format(e, member_state(v))
                                  for e, v in sorted(views.items())) + ")"
    return (
        "quorum lost: {} of {} voters up, {} needed{}. Start the members that are down "
        "(systemctl start etcd); if their data is gone for good, recover from the member "
        "with the most data (salt-run state.orchestrate etcd.recover) or restore the last "
        "snapshot (etcd.restore)".format(up, quorum_state["voters"], quorum_state["needed"], states)
    )


def _etcd_id(data):
    """etcd's ID of ``data``: the first 8 bytes of its SHA-1, big-endian (etcd's
    ``membership.NewMember`` and ``RaftCluster.genID``)."""
    return struct.unpack(">Q", hashlib.sha1(data).digest()[:8])[0]


def static_bootstrap_ids(initial_cluster, token):
    """
    The IDs etcd gives a cluster bootstrapped with ``initial-cluster`` ``initial_cluster``
    ("name=peer-url,...") and ``initial-cluster-token`` ``token``: ``{"cluster_id",
    "members": {peer URL: member ID}}``, in hex as etcd prints them. Every initial member
    computes the same IDs from the same two settings; that is how the members of a static
    bootstrap find they are one cluster, and how a member can prove that a cluster under way
    is the one its own settings make.
    """
    peers = {}
    for part in (p.strip() for p in initial_cluster.split(",") if p.strip()):
        name, _, url = part.partition("=")
        peers.setdefault(name, []).append(url)
    members = {}
    for urls in peers.values():
        member_id = _etcd_id(("".join(sorted(urls)) + token).encode("utf-8"))
        members.update({url: member_id for url in urls})
    cluster_id = _etcd_id(b"".join(struct.pack(">Q", m) for m in sorted(set(members.values()))))
    return {"cluster_id": "{:x}".format(cluster_id),
            "members": {url: "{:x}".format(m) for url, m in members.items()}}


def _same_id(a, b):
    try:
        return int(str(a), 16) == int(str(b), 16)
    except ValueError:
        return False


def bootstrap_decision(me, others, token, init, answers, local_states=None):
    """
    Which ``initial-*`` settings a member with an EMPTY data dir may start with; the rule
    that keeps a highstate from ever starting a second cluster. Bootstrapping (``new``) is
    done only on proof that no cluster exists:

    - a cluster answers on a member's peer port (``answers``) and lists this member: join it
      (``existing``, its real membership). A cluster none of whose members ever ran is a
      bootstrap under way (all members applied at once, another one's etcd started first):
      this member is one of its initial members and starts as they did, ``new`` with the
      same initial cluster and token, once the answered cluster ID proves it is the one
      those settings make (``static_bootstrap_ids``); etcd refuses ``existing`` there, as
      "incompatible with current running cluster", until a quorum has elected a leader, which
      it cannot without this member. A cluster that has run must have a leader for this
      member to join it (``needs_leader``: an election, or a lost quorum, is waited out, then
      refused). A member that has run in it before has lost its data: it cannot rejoin under
      its old ID (refused);
    - a cluster answers that does not list this member: refused (add it first);
    - more than one cluster answers: refused (``EtcdSplit``);
    - no member answers: ``new`` only when every other member positively reports no data
      and no etcd running (``local_states``, asked live through Salt) or the operator says
      ``init: new`` for this run; a member whose etcd is starting means "look again"; any
      doubt (no answer, a timeout, a TLS error, another member's data) is ``EtcdNoProof``.

    ``me``: {"minion", "name", "peer_url", "initial_cluster"}; ``others``: {minion: peer URL};
    ``answers``: ``probe_peers``'s; ``local_states``: {minion: etcd_cluster.local_state()} (a
    missing minion did not answer), or None (not asked yet). Returns {"kind": "new" |
    "existing" | "ask" (ask the others' local states) | "wait" (look again shortly),
    "initial", "why", "members" (the joined cluster's), "needs_leader"}.
    """
    def decided(kind, why, initial=None, members=None, needs_leader=False):
        return {"kind": kind, "initial": initial, "why": why, "members": members,
                "needs_leader": needs_leader}

    if not others or (init == "new" and not any("answer" in a for a in answers.values())):
        why = "a cluster of one" if not others else "init: new (no member answers)"
        return decided("new", why, etcd_render.initial(me["initial_cluster"], "new", token))

    answered = {m: a["answer"] for m, a in answers.items() if "answer" in a}
    if answered:
        seen = {}
        for minion, answer in answered.items():
            seen.setdefault(answer["cluster_id"], []).append(minion)
        if len(seen) > 1:
            raise errors.EtcdSplit(
                "the members answer for {} different clusters ({}): refusing to join any; "
                "see salt-run etcd.status".format(
                    len(seen), "; ".join("{}: {}".format(c, ", ".join(sorted(ms)))
                                         for c, ms in sorted(seen.items()))),
                clusters=seen,
            )
        cluster_id, minions = next(iter(seen.items()))
        members = answered[minions[0]]["members"]
        ours = find_by_peer_urls(members, [me["peer_url"]])
        if ours is None:
            raise errors.EtcdUnsafe(
                "cluster {} runs (answered by {}) with members {} and not this member ({}): "
                "add it first: salt-run state.orchestrate etcd.add_member "
                "pillar='{{\"etcd_member\": \"{}\"}}'".format(
                    cluster_id, ", ".join(sorted(minions)),
                    ", ".join(label(m) for m in members), me["peer_url"], me["minion"])
            )
        if has_run(ours):
            raise errors.EtcdUnsafe(
                "member {} ({}) has run in cluster {} before, and its data dir is empty: its "
                "data is lost and it cannot rejoin under its old ID (etcd would panic on the "
                "missing log). Remove it and add it again: salt-run state.orchestrate "
                "etcd.remove_member pillar='{{\"etcd_member\": \"{}\"}}', then etcd.add_member"
                .format(me["name"], ours["id"], cluster_id, me["minion"])
            )
        if not any(has_run(m) for m in members):
            return _join_the_bootstrap(me, token, cluster_id, members, minions)
        try:
            joined = etcd_render.joining_initial_cluster(members, me["name"], me["peer_url"])
        except ValueError as exc:
            raise errors.EtcdUnsafe("cluster {} runs: {}".format(cluster_id, exc)) from None
        why = "existing (a registered {} of cluster {}, answered by {})".format(
            "learner" if ours["is_learner"] else "member", cluster_id, ", ".join(sorted(minions)))
        return decided("existing", why, etcd_render.initial(joined, "existing", token),
                       members, needs_leader=True)

    if init == "existing":
        raise errors.EtcdNoProof(
            "init is existing, but no other member answers on its peer port ({}): nothing to "
            "join".format(_answers_text(answers))
        )
    doubts = {m: a["error"] for m, a in answers.items() if "error" in a}
    if doubts:
        raise errors.EtcdNoProof(
            "no proof that no cluster exists: {} did not answer clearly ({}); a member "
            "without data starts a cluster only when every other member answers. Fix what "
            "keeps them from answering, or, if you know no cluster exists, apply once with "
            "pillar='{{\"etcd\": {{\"clusters\": {{\"<cluster>\": {{\"init\": \"new\"}}}}}}}}'"
            .format(", ".join(sorted(doubts)), _answers_text({m: answers[m] for m in doubts}))
        )
    if local_states is None:
        return decided("ask", "no member's etcd answers: asking the members whether they hold data")
    silent = sorted(m for m in others if not isinstance(local_states.get(m), dict))
    with_data = sorted(m for m in others if m not in silent and local_states[m].get("data"))
    starting = sorted(m for m in others if m not in silent and local_states[m].get("running"))
    # data and etcd running: its etcd may have started after the peer probe (the members
    # applied at once): look again, its peer port answers for the cluster it is in by then
    with_data = [m for m in with_data if m not in starting]
    if with_data:
        raise errors.EtcdUnsafe(
            "{} hold{} etcd data but {} etcd does not answer: a cluster exists and this member "
            "must not start another one. Start etcd there (systemctl start etcd), then add this "
            "member with etcd.add_member; or, if that data must go, purge it first "
            "(state.apply etcd.purge archives it)".format(
                ", ".join(with_data), "s" if len(with_data) == 1 else "",
                "its" if len(with_data) == 1 else "their")
        )
    if silent:
        raise errors.EtcdNoProof(
            "no proof that no cluster exists: {} did not say whether {} etcd data (the "
            "minion is down, or the master's peer ACL lacks etcd_cluster.local_state for the "
            "members: docs/operations.md). Apply the members together once they answer; or, "
            "if you know no cluster exists, apply once with pillar='{{\"etcd\": {{\"clusters\": "
            "{{\"<cluster>\": {{\"init\": \"new\"}}}}}}}}'".format(
                ", ".join(silent), "it holds" if len(silent) == 1 else "they hold")
        )
    if starting:
        return decided("wait", "etcd is starting on {} but its peer port does not answer".format(
            ", ".join(starting)))
    return decided("new", "new (every other member answered: no data, no etcd running: {})".format(
        ", ".join(sorted(others))), etcd_render.initial(me["initial_cluster"], "new", token))


# Polls to wait after asking the members (a peer publish) before the next look.
ASK_PAUSE_POLLS = 3


def decide_initial(me, others, token, init, probe, ask, leader_known, wait=60, poll=1.0):
    """
    ``bootstrap_decision`` until it decides, or ``wait`` seconds have passed: the I/O is the
    caller's (``probe()``: ``probe_peers``'s answers; ``ask()``: the others' local states;
    ``leader_known(members)``: whether a member of that list knows a leader). Returns
    (initial values, why); raises ``EtcdNoProof`` (or the decision's own refusal) otherwise,
    and then nothing may be written.
    """
    give_up_at = time.monotonic() + wait
    while True:
        asked = False
        decision = bootstrap_decision(me, others, token, init, probe())
        if decision["kind"] == "ask":
            asked = True
            decision = bootstrap_decision(me, others, token, init, probe(), ask())
        if decision["kind"] == "existing" and decision["needs_leader"] \
                and not leader_known(decision["members"]):
            decision = dict(decision, kind="wait", why=(
                "the cluster has no leader (an election under way, or its quorum is lost: "
                "see salt-run etcd.status); this member joins once it has one"))
        if decision["kind"] in ("new", "existing"):
            return decision["initial"], decision["why"]
        if time.monotonic() >= give_up_at:
            raise errors.EtcdNoProof(
                "{} for {} s: nothing was written; start the members that are down, then "
                "apply again".format(decision["why"], wait))
        # an ask is a peer publish, which holds a master worker until the others answer:
        # members asking every second starve the master (its file and pillar requests
        # wait, so the member everyone waits for starts late). The peer probe goes to the
        # members directly: it alone is repeated at once.
        time.sleep(poll * ASK_PAUSE_POLLS if asked else poll)


def removed_by(answers, peer_url):
    """The ID of a cluster that answered (``probe_peers``) without the member at ``peer_url``
    in it (the member was removed, or never added), or None."""
    for answer in (a["answer"] for a in answers.values() if "answer" in a):
        if find_by_peer_urls(answer["members"], [peer_url]) is None:
            return answer["cluster_id"]
    return None


def _join_the_bootstrap(me, token, cluster_id, members, minions):
    """``bootstrap_decision`` for a member of a static bootstrap under way (no member of the
    answered cluster ever ran): ``new``, as the others started, when the answered cluster is
    the one this member's initial cluster and token make; refused otherwise (a ``new`` start
    with other settings would be a second cluster)."""
    expected = static_bootstrap_ids(me["initial_cluster"], token)
    if not _same_id(cluster_id, expected["cluster_id"]):
        raise errors.EtcdUnsafe(
            "cluster {} is bootstrapping (answered by {}, members {}, none has run yet), but "
            "this member's initial cluster {} with token {} makes cluster {}: the members were "
            "started with other settings. Apply the same pillar to every member (salt-run "
            "etcd.status shows them)".format(
                cluster_id, ", ".join(sorted(minions)),
                ", ".join(label(m) for m in members), me["initial_cluster"], token,
                expected["cluster_id"]))
    why = ("new (an initial member of cluster {}, bootstrapping: {} started first; the same "
           "initial cluster and token make the same cluster ID)".format(
               cluster_id, ", ".join(sorted(minions))))
    return {"kind": "new", "initial": etcd_render.initial(me["initial_cluster"], "new", token),
            "why": why, "members": members, "needs_leader": False}


def _answers_text(answers):
    return "; ".join(
        "{}: {}".format(m, "nothing listens" if a.get("refused") else a.get("error", "answered"))
        for m, a in sorted(answers.items())
    )


# -- reading the cluster --------------------------------------------------------------------------


def leader_status(client, members):
    """The status of the leader (asked of the members in turn), or raise."""
    failures = []
    for member in members:
        for url in member["client_urls"]:
            try:
                status = client.status(url)
            except errors.EtcdError as exc:
                failures.append(str(exc))
                continue
            if status["leader"] == status["id"]:
                return status
            leader = next((m for m in members if m["id"] == status["leader"]), None)
            if leader and leader["client_urls"]:
                try:
                    return client.status(leader["client_urls"][0])
                except errors.EtcdError as exc:
                    failures.append(str(exc))
    raise errors.EtcdUnreachable(
        "no member knows a leader: " + ("; ".join(failures) or "no member has a client URL")
    )


def member_statuses(client, members):
    """{member id: status or None} and {member id: error} of the started members."""
    statuses, failures = {}, {}
    for member in members:
        statuses[member["id"]] = None
        if not member["client_urls"]:
            failures[member["id"]] = "not started"
            continue
        try:
            statuses[member["id"]] = client.status(member["client_urls"][0])
        except errors.EtcdError as exc:
            failures[member["id"]] = str(exc)
    return statuses, failures


def member_health(client, members, statuses=None):
    """{member id: health} for every member (``not started`` for the unstarted, ``no
    leader`` without a read for one whose status says it knows none)."""
    health = {}
    for member in members:
        status = (statuses or {}).get(member["id"])
        if not member["client_urls"]:
            health[member["id"]] = {"endpoint": None, "healthy": False, "error": "not started",
                                    "took": 0.0}
        elif status is not None and not int(status["leader"], 16) and not status["is_learner"]:
            # a read would wait for a leader until the request times out
            health[member["id"]] = {"endpoint": member["client_urls"][0], "healthy": False,
                                    "error": "up without a leader", "took": 0.0}
        else:
            health[member["id"]] = client.health(member["client_urls"][0])
    return health


def healthy_ids(client, members):
    """IDs of the members that answer a linearizable read now."""
    return {mid for mid, h in member_health(client, members).items() if h["healthy"]}


def survey(client, endpoints):
    """Each endpoint's status, or why it did not answer: {endpoint: {"status": ...} |
    {"error": why, "refused": bool}}. It tells a split (two cluster IDs) and a quorum loss
    (members up without a leader) where a member list cannot."""
    views = {}
    for endpoint in endpoints:
        try:
            views[endpoint] = {"status": client.status(endpoint)}
        except errors.EtcdUnreachable as exc:
            views[endpoint] = {"error": exc.failures.get(endpoint, exc.message),
                               "refused": exc.refused}
        except errors.EtcdError as exc:
            views[endpoint] = {"error": exc.message, "refused": False}
    return views


def _members_of_views(client, views):
    """The member list as the members of the largest cluster seen report it (None if none
    answers)."""
    seen = clusters_seen(views)
    for _, endpoints in sorted(seen.items(), key=lambda item: -len(item[1])):
        for endpoint in endpoints:
            try:
                return client.members(endpoint=endpoint)
            except errors.EtcdError:
                continue
        break
    return None


def health(client, endpoints=None):
    """
    The cluster's health (``summarise``): asked of every endpoint (default: the client's),
    so a split and a quorum loss show. Never raises for an unhealthy cluster: ``healthy``
    False, with an ``error`` saying what is wrong and what to do for a split, a quorum loss
    or no leader (a member down or an alarm shows in ``members`` and ``alarms``).
    """
    views = survey(client, endpoints or client.endpoints)
    current = _members_of_views(client, views)
    if current is None:
        seen_text = "; ".join("{}: {}".format(e, member_state(v)) for e, v in sorted(views.items()))
        return {"healthy": False, "error": "no etcd endpoint answered ({})".format(seen_text),
                "quorum": {"ok": False}, "members": {}, "clusters": {}, "split": False,
                "views": views}
    for view in views.values():
        status = view.get("status")
        member = find(current, status["id"]) if status else None
        if member is not None:
            status["name"] = label(member)
    by_id = {v["status"]["id"]: v["status"] for v in views.values() if v.get("status")}
    statuses = {m["id"]: by_id.get(m["id"]) for m in current}
    per_member = member_health(client, current, statuses)
    alarms, leader_id, problem = [], None, None
    try:
        alarms = client.alarms()
        leader_id = leader_status(client, current)["id"]
    except errors.EtcdError as exc:
        problem = exc.message
    summary = summarise(current, per_member, alarms, leader_id, views)
    if problem and not summary["error"]:
        summary.update(healthy=False, error=problem)
    summary["views"] = views
    return summary


def wait_healthy(client, endpoints=None, timeout=SETTLE_SECONDS):
    """``health`` until healthy or ``timeout`` seconds have passed: a member in its restart
    delay or an election is given that long. Returns the last summary."""
    give_up_at = time.monotonic() + timeout
    while True:
        summary = health(client, endpoints)
        if summary["healthy"] or summary.get("split") or time.monotonic() >= give_up_at:
            return summary
        time.sleep(1.0)


def status(client):
    """Each member's status, by name (``etcdctl endpoint status`` plus alarms and cluster
    ID): ``error`` for a member that does not answer."""
    current = client.members()
    statuses, failures = member_statuses(client, current)
    alarms = client.alarms()
    report = {}
    for member in current:
        entry = dict(statuses[member["id"]] or {"id": member["id"],
                                                "is_learner": member["is_learner"]})
        entry["is_leader"] = entry.get("leader") == member["id"]
        entry["alarms"] = [a["alarm"] for a in alarms if a["member_id"] == member["id"]]
        entry["error"] = failures.get(member["id"])
        report[label(member)] = entry
    return report


# -- changing the membership ----------------------------------------------------------------------


def _added(client, name, member, added):
    current = client.members()
    try:
        initial_cluster = etcd_render.joining_initial_cluster(current, name, member["peer_urls"][0])
    except ValueError as exc:
        raise errors.EtcdUnsafe(str(exc)) from None
    return {
        "id": member["id"],
        "name": name,
        "peer_urls": member["peer_urls"],
        "is_learner": member["is_learner"],
        "started": member["started"],
        "added": added,
        "initial_cluster": initial_cluster,
        "initial_cluster_state": "existing",
        "members": current,
        "refusals": list(client.last_retries["refusals"]) if added else [],
    }


def add(client, name, peer_urls, learner=True, timeout=60):
    """
    Add a member (a learner by default); idempotent: a member with these peer URLs already
    is returned with ``added: False``. Refuses what ``add_refusal`` refuses.
    """
    current = client.members()
    existing = find_by_peer_urls(current, peer_urls)
    if existing:
        return _added(client, name, existing, added=False)
    refusal = add_refusal(current, peer_urls, learner)
    if refusal:
        raise errors.EtcdUnsafe(refusal)
    try:
        member = client.member_add(peer_urls, learner=learner, deadline=float(timeout))["member"]
    except errors.EtcdAlreadyMember:
        # a request that timed out may have been applied: the retry finds it done
        member = find_by_peer_urls(client.members(), peer_urls)
        if member is None:
            raise
        return _added(client, name, member, added=False)
    return _added(client, name, member, added=True)


def wait_caught_up(client, member_id, give_up_at, poll=POLL_SECONDS):
    """Wait until learner ``member_id`` runs and has the leader's raft index; return both
    indexes (None when it is a voter already). EtcdCatchUpTimeout at ``give_up_at``."""
    why = "it never answered"
    while True:
        current = client.members()
        learner = require(current, member_id)
        if not learner["is_learner"]:
            return None
        if not learner["started"]:
            why = "it has not started (start it with the initial_cluster the add returned)"
        else:
            leader_index = leader_status(client, current)["raft_index"]
            try:
                learner_status = client.status(learner["client_urls"][0])
            except errors.EtcdError as exc:
                learner_status = None
                why = "it does not answer: {}".format(exc)
            if caught_up(leader_index, learner_status):
                return {"learner": learner_status["raft_index"], "leader": leader_index}
            if learner_status is not None:
                why = "its raft index is {}, the leader's {}".format(
                    learner_status["raft_index"], leader_index)
        if time.monotonic() >= give_up_at:
            raise errors.EtcdCatchUpTimeout(
                "learner {} has not caught up with the leader in time: {}".format(
                    label(learner), why)
            )
        time.sleep(poll)


def promote(client, member, timeout=120, poll=POLL_SECONDS):
    """
    Promote a learner once it is started and caught up (checked here: etcd 3.4's own check
    can pass for a learner that never started), retrying etcd's "not in sync" and "unhealthy
    cluster" refusals, all within ``timeout`` seconds. A voter is left as it is
    (``promoted: False``). ``EtcdCatchUpTimeout`` when it did not catch up in time: the
    one failure after which a caller may roll the learner back (``rollback_learner``).
    """
    started = time.monotonic()
    give_up_at = started + float(timeout)
    target = require(client.members(), member)
    if not target["is_learner"]:
        return {"id": target["id"], "name": target["name"], "promoted": False, "waited": 0.0}
    progress = wait_caught_up(client, target["id"], give_up_at, poll)
    try:
        after = client.member_promote(
            target["id"], deadline=max(give_up_at - time.monotonic(), 0.0))
    except errors.EtcdNotLearner:
        # promoted meanwhile by someone else: it is as wanted
        target = require(client.members(), target["id"])
        if target["is_learner"]:
            raise
        return {"id": target["id"], "name": target["name"], "promoted": False, "waited": 0.0}
    except errors.EtcdLearnerNotReady as exc:
        # etcd's own check still says "not in sync" at the deadline: a catch-up timeout too
        raise errors.EtcdCatchUpTimeout(
            "learner {} is not in sync with the leader in time: {}".format(label(target), exc.message)
        ) from None
    return {
        "id": target["id"],
        "name": require(after, target["id"])["name"],
        "promoted": True,
        "waited": round(time.monotonic() - started, 3),
        "caught_up": progress,
        "refusals": list(client.last_retries["refusals"]),
    }


def rollback_learner(client, member):
    """
    After ``promote`` timed out catching up: the membership is read again first; a member
    promoted after all is kept (``{"promoted_after_all": True}``), a learner still is
    removed (``{"removed": True}``): the caller then stops its etcd and wipes its data.
    """
    current = require(client.members(), member)
    if not current["is_learner"]:
        return {"id": current["id"], "promoted_after_all": True, "removed": False}
    client.member_remove(current["id"])
    return {"id": current["id"], "promoted_after_all": False, "removed": True}


def promote_or_roll_back(client, member, timeout=120, poll=POLL_SECONDS):
    """
    ``promote``; when, and only when, the learner did not catch up in time
    (``EtcdCatchUpTimeout``), ``rollback_learner``. Any other failure is raised as it is,
    with nothing rolled back. Returns promote's answer, or ``{"rolled_back": True, "why":
    ...}`` (the learner is out of the membership: its host's data must go), or
    ``{"promoted": True, "promoted_after_all": True}``.
    """
    try:
        return promote(client, member, timeout=timeout, poll=poll)
    except errors.EtcdCatchUpTimeout as exc:
        rolled = rollback_learner(client, member)
        if rolled["promoted_after_all"]:
            return {"id": rolled["id"], "promoted": True, "promoted_after_all": True,
                    "waited": float(timeout)}
        return {"id": rolled["id"], "promoted": False, "rolled_back": True, "why": exc.message}


def removal_check(client, member):
    """Whether removing ``member`` now is safe, without removing it: ``id``, ``name``,
    ``is_learner``, ``safe``, ``refusal``."""
    current = client.members()
    target = require(current, member)
    refusal = removal_refusal(current, target["id"], healthy_ids(client, current))
    return {"id": target["id"], "name": target["name"], "is_learner": target["is_learner"],
            "safe": refusal is None, "refusal": refusal}


def move_leadership(client, current, leader, target, healthy):
    """Hand leadership from ``leader`` (its status) to ``target`` (or the best healthy voter);
    the new leader's label, checked with the new leader itself."""
    if target is None:
        statuses, _ = member_statuses(client, current)
        target = leader_candidate(current, leader["id"], healthy, statuses)
        if target is None:
            raise errors.EtcdUnsafe(
                "no healthy voting member to hand leadership to from {}".format(
                    label(require(current, leader["id"]))))
    client.move_leader(target["id"], leader["endpoint"])
    give_up_at = time.monotonic() + 10
    while client.status(target["client_urls"][0])["leader"] != target["id"]:
        if time.monotonic() >= give_up_at:
            raise errors.EtcdTimeout("leadership did not move to {}".format(label(target)))
        time.sleep(0.2)
    return label(target)


def move_leader(client, member=None):
    """Hand leadership to ``member`` (default: the healthy voter furthest ahead):
    {"old", "new", "moved"}; nothing happens when it leads already."""
    current = client.members()
    leader = leader_status(client, current)
    old = label(require(current, leader["id"]))
    target = None
    if member is not None:
        target = require(current, member)
        if target["is_learner"] or not target["started"]:
            raise errors.EtcdUnsafe(
                "{} cannot lead: it is a learner or has never started".format(label(target)))
        if target["id"] == leader["id"]:
            return {"old": old, "new": old, "moved": False}
    new = move_leadership(client, current, leader, target, healthy_ids(client, current))
    return {"old": old, "new": new, "moved": True}


def remove(client, member, force=False, timeout=60):
    """
    Remove a member. Refuses what would lose quorum, the last voter and one of 2 voters
    (``removal_refusal``) unless ``force``. A leader hands its leadership to the healthy
    voter furthest ahead first, so the cluster is not leaderless for an election timeout.
    """
    current = client.members()
    target = require(current, member)
    healthy = healthy_ids(client, current)
    refusal = removal_refusal(current, target["id"], healthy)
    if refusal and not force:
        raise errors.EtcdUnsafe(refusal + " (force=True removes it anyway)")
    moved_to = None
    if not target["is_learner"] and len(voters(current)) > 1:
        try:
            leader = leader_status(client, current)
        except errors.EtcdError:
            if not force:
                raise
            leader = None
        if leader and leader["id"] == target["id"]:
            moved_to = move_leadership(client, current, leader, None, healthy)
    remaining = client.member_remove(target["id"], deadline=float(timeout))
    return {"id": target["id"], "name": target["name"], "removed": True,
            "leader_moved_to": moved_to, "members": remaining}
