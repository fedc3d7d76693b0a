"""
An etcd member's config file (etcd's YAML, read with ``--config-file``), from pillar ``etcd``.

``initial-cluster-state`` is never taken on trust (``etcd_membership.bootstrap_decision``
has the rule): a member with an empty data dir

- joins (``existing``, the real membership) a cluster that answers on a member's peer port
  and lists it as a registered member or learner;
- starts as the others did (``new``, the same initial cluster and token) when the cluster
  that answers is a bootstrap under way of exactly its settings (its cluster ID proves it);
- bootstraps (``new``) only on proof that no cluster exists: every other member answered
  through Salt that it holds no data and runs no etcd, or the operator says ``init: new``
  for this run;
- otherwise refuses, writing nothing, naming who did not answer and the way out.

Once the data dir holds a member, its ``initial-*`` settings are kept (membership changes
elsewhere never rewrite the file, nor restart etcd through it), and a change of what the
member is to the others or where its data lives (``data_dir``, address, ports, seq) is
refused: a restart would start it on an empty dir or with peer URLs nobody knows.

.. code-block:: yaml

    etcd-config-file-managed:
      etcd_config.managed:
        - name: /etc/etcd/etcd.conf.yml
        - group: etcd
        - package: etcd-server
"""

import os.path

import yaml
from salt.exceptions import CommandExecutionError, SaltInvocationError

__virtualname__ = "etcd_config"

# How long a member without data waits for a decision (a peer's etcd starting, an
# election) before it refuses, writing nothing.
BOOTSTRAP_WAIT = 60
# Seconds the members get to say through Salt whether they hold data.
LOCAL_STATE_TIMEOUT = 10


def __virtual__():
    if "etcd_cluster.settings" not in __salt__:
        return (False, "etcd_config needs the etcd_cluster execution module")
    return __virtualname__


def _settings():
    settings = __salt__["etcd_cluster.settings"]()
    if not settings:
        raise SaltInvocationError(
            "minion {} is in no cluster of pillar etcd:clusters, or the pillar is broken "
            "(etcd.assert names every problem)".format(__opts__["id"]))
    return settings


def _from_file_state(ret, file_ret, note):
    """Our return from the file.managed run that wrote the file, with a ``note`` on why."""
    ret.update(
        result=file_ret["result"],
        changes=file_ret.get("changes") or {},
        comment="{} ({})".format(file_ret.get("comment", ""), note),
    )
    return ret


def _current_config(name):
    """The file's settings as a dict ({} when absent or not etcd YAML)."""
    if not __salt__["file.file_exists"](name):
        return {}
    try:
        loaded = yaml.safe_load(__salt__["file.read"](name))
    except yaml.YAMLError:
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _holds_member(data_dir):
    return bool(data_dir) and (
        __salt__["file.directory_exists"](os.path.join(data_dir, "member", "wal"))
        or __salt__["file.directory_exists"](os.path.join(data_dir, "member", "snap")))


def _local_states(others, publish):
    """What the other members say of their own etcd (``etcd_cluster.local_state``), asked
    live through Salt's peer publish: {minion: state}; a minion that did not answer, or
    answered an error, is left out."""
    answers = publish(",".join(sorted(others)), "etcd_cluster.local_state", tgt_type="list",
                      timeout=LOCAL_STATE_TIMEOUT) or {}
    return {m: a for m, a in answers.items() if m in others and isinstance(a, dict)}


def _leader_known(members, connect, leader_status, tls, timeout):
    """Whether a member of ``members`` knows a leader (asked with this member's client
    certificate)."""
    urls = [url for m in members for url in m["client_urls"]]
    if not urls:
        return False
    try:
        with connect(urls, timeout=timeout, **tls) as client:
            leader_status(client, members)
        return True
    except CommandExecutionError:
        return False


def _derive_initial(settings, timeout):
    """(INITIAL_KEYS values, why) for a member whose data dir is empty, on proof only
    (``etcd_membership.decide_initial`` has the rule; the I/O is here). The functions the
    callbacks use are looked up here: the callbacks run inside the layer's call, where this
    module's dunders do not resolve."""
    me = {"minion": settings["minion_id"], "name": settings["member_name"],
          "peer_url": settings["peer_url"], "initial_cluster": settings["initial_cluster"]}
    others = {m: url for m, url in settings["peer_urls"].items() if m != settings["minion_id"]}
    peer_tls = __utils__["etcd_settings.peer_tls_files"]()
    probe_peers = __utils__["etcd_membership.probe_peers"]
    connect = __utils__["etcd_membership.connect"]
    leader_status = __utils__["etcd_membership.leader_status"]
    publish = __salt__["publish.publish"]
    client_tls = __utils__["etcd_settings.client_tls_files"]()
    return __utils__["etcd_membership.decide_initial"](
        me, others, settings["initial_cluster_token"], settings["init"],
        probe=lambda: probe_peers(others, timeout=timeout, **peer_tls),
        ask=lambda: _local_states(others, publish),
        leader_known=lambda members: _leader_known(members, connect, leader_status,
                                                   client_tls, timeout),
        wait=BOOTSTRAP_WAIT,
    )


def managed(name, user="root", group="etcd", mode="0640", package=None, probe_timeout=2):
    """
    Ensure this minion's etcd config file matches pillar ``etcd`` (see the module doc for
    how the ``initial-*`` settings are chosen, and what a member with data refuses).

    name
        Path of the config file.

    user, group, mode
        Owner and mode. Default root, etcd, 0640 (etcd reads it; it names no secret).

    package
        The etcd package: its installed version decides version-bound settings
        (``enable-v2`` is never written for etcd 3.6).

    probe_timeout
        Seconds to wait for each other member's peer port.
    """
    ret = {"name": name, "changes": {}, "result": True, "comment": ""}
    try:
        settings = _settings()
        current = _current_config(name)
        version = __salt__["pkg.version"](package) if package else None
        render = __utils__["etcd_render.member_config"]
        old_dir = current.get("data-dir")
        if _holds_member(old_dir) or _holds_member(settings["data_dir"]):
            initial = __utils__["etcd_render.initial_settings"](current) or \
                __utils__["etcd_render.initial"](
                    settings["initial_cluster"], "existing", settings["initial_cluster_token"])
            if not __utils__["etcd_settings.token_matches"](initial["initial-cluster-token"],
                                                           settings):
                raise CommandExecutionError(
                    "the data dir holds a member of cluster token {}, the pillar wants {} "
                    "(incarnation {}): purge this member (state.apply etcd.purge archives it "
                    "first) before re-creating the cluster".format(
                        initial["initial-cluster-token"], settings["initial_cluster_token"],
                        settings["incarnation"]))
            config = render(settings, initial, version or None)
            moved = __utils__["etcd_render.identity_changes"](current, config)
            if moved:
                raise CommandExecutionError(
                    __utils__["etcd_render.identity_refusal"](settings["member_name"], moved))
            why = "{} (kept: the data dir holds a member)".format(initial["initial-cluster-state"])
        else:
            if not all(os.path.exists(p) for p in __utils__["etcd_settings.peer_tls_files"]().values()):
                if __opts__["test"]:
                    ret.update(result=None, changes={"config": name}, comment=(
                        "{} would be written; its initial-cluster-state is decided when applied "
                        "(the member's peer certificate, which asks the others, does not exist "
                        "yet)".format(name)))
                    return ret
                raise CommandExecutionError(
                    "no peer certificate at {}: the member cannot ask the others whether a "
                    "cluster runs (etcd.pki first)".format(
                        __utils__["etcd_settings.peer_tls_files"]()["cert_file"]))
            initial, why = _derive_initial(settings, probe_timeout)
            config = render(settings, initial, version or None)
        contents = __utils__["etcd_render.config_text"](config)
        file_ret = __states__["file.managed"](
            name=name, contents=contents, user=user, group=group, mode=mode)
    except (CommandExecutionError, SaltInvocationError) as err:
        ret.update(result=False, comment=str(err))
        return ret
    return _from_file_state(ret, file_ret, "initial-cluster-state " + why)


def env_managed(name, probe_timeout=2):
    """
    Ensure the etcdctl environment file (``ETCDCTL_*`` and the ``e``/``em`` aliases,
    ``etcd_render.env_file``) points at the cluster's voting members: a learner serves no
    client request.

    name
        Path of the file, e.g. ``/etc/profile.d/etcdctl.sh``.

    probe_timeout
        Seconds to wait for the cluster when reading which members vote.
    """
    ret = {"name": name, "changes": {}, "result": True, "comment": ""}
    try:
        settings = _settings()
        members = None
        tls = __utils__["etcd_settings.client_tls_files"]()
        if all(__salt__["file.file_exists"](path) for path in tls.values()):
            try:
                members = __salt__["etcd_cluster.members"](request_timeout=probe_timeout)
            except CommandExecutionError:
                members = None  # no cluster to ask yet: the pillar members are the voters
        endpoints = __utils__["etcd_settings.voting_client_urls"](settings, members)
        file_ret = __states__["file.managed"](
            name=name,
            contents=__utils__["etcd_render.env_file"](endpoints, settings["paths"]),
            user="root",
            group="root",
            mode="0644",
        )
    except (CommandExecutionError, SaltInvocationError) as err:
        ret.update(result=False, comment=str(err))
        return ret
    return _from_file_state(ret, file_ret, "endpoints: " + ", ".join(endpoints))
