"""
An etcd member's config file (etcd's YAML, read with ``--config-file``), from pillar ``etcd``.

``initial-cluster-state`` is derived, not taken on trust:

- ``new`` when no other member of the cluster answers with a leader (a fresh bootstrap:
  every member starts from the pillar's member list);
- ``existing`` when a cluster with a leader runs: ``initial-cluster`` is then the real
  membership read from it, this member included (it must have been added first);
- pillar ``init: new|existing`` forces it (``existing`` still reads the real membership).

Once the data dir holds a member, etcd ignores the ``initial-*`` settings: the ones already
in the file are kept, so membership changes elsewhere never rewrite this file (and never
restart etcd through it).

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

HEADER = "# Managed by Salt (etcd formula, etcd_config.managed): local changes are overwritten.\n"


def __virtual__():
    if "etcd_cluster.settings" not in __salt__:
        return (False, "etcd_config needs the etcd_cluster execution module")
    return __virtualname__


def _settings():
    settings = __salt__["etcd_cluster.settings"]()
    if not settings:
        raise SaltInvocationError(
            "minion {} is in no cluster of pillar etcd:clusters, or the pillar is broken "
            "(etcd.assert names every problem)".format(__opts__["id"])
        )
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


def _running_cluster_members(settings, timeout):
    """
    The membership of the running cluster as the other members report it, or None when
    none of them answers with a leader (no cluster runs yet).
    """
    others = [url for url in settings["endpoints"] if url != settings["client_url"]]
    tls = __utils__["etcd_pillar.client_tls_files"]()
    if not others or not all(__salt__["file.file_exists"](path) for path in tls.values()):
        # a lone member, or no client certificate yet (test mode on a fresh host)
        return None
    try:
        __salt__["etcd_cluster.leader"](endpoints=others, request_timeout=timeout)
        return __salt__["etcd_cluster.members"](endpoints=others, request_timeout=timeout)
    except CommandExecutionError:
        return None


def _derive_initial(settings, timeout):
    """(INITIAL_KEYS values, why) for a member whose data dir is empty."""

    def initial(initial_cluster, state):
        return {
            "initial-cluster": initial_cluster,
            "initial-cluster-state": state,
            "initial-cluster-token": settings["initial_cluster_token"],
        }

    if settings["init"] == "new":
        return initial(settings["initial_cluster"], "new"), "new (forced by init: new)"
    members = _running_cluster_members(settings, timeout)
    if members is None:
        if settings["init"] == "existing":
            raise CommandExecutionError(
                "init is existing, but no other member of cluster {} answers with a "
                "leader ({})".format(settings["name"], ", ".join(settings["endpoints"]))
            )
        return (
            initial(settings["initial_cluster"], "new"),
            "new (no other member answers: bootstrapping)",
        )
    try:
        joined = __utils__["etcd_pillar.joining_initial_cluster"](
            members, settings["member_name"], settings["peer_url"]
        )
    except ValueError as err:
        raise CommandExecutionError("cluster {} runs: {}".format(settings["name"], err)) from err
    return initial(joined, "existing"), "existing (joining the running cluster)"


def managed(name, user="root", group="etcd", mode="0640", package=None, probe_timeout=2):
    """
    Ensure this minion's etcd config file matches pillar ``etcd`` (see the module doc for
    how the ``initial-*`` settings are chosen).

    name
        Path of the config file.

    user, group, mode
        Owner and mode. Default root, etcd, 0640 (etcd reads it; it names no secret).

    package
        The etcd package: its installed version decides version-bound settings
        (``enable-v2`` is never written for etcd 3.6).

    probe_timeout
        Seconds to wait for each other member when checking whether a cluster runs.
    """
    ret = {"name": name, "changes": {}, "result": True, "comment": ""}
    try:
        settings = _settings()
        current = _current_config(name)
        initialised = __salt__["file.directory_exists"](
            os.path.join(settings["data_dir"], "member")
        )
        initial = __utils__["etcd_pillar.initial_settings"](current) if initialised else None
        if initial is not None:
            if initial["initial-cluster-token"] != settings["initial_cluster_token"]:
                raise CommandExecutionError(
                    "the data dir {} holds a member of cluster token {}, the pillar wants {} "
                    "(incarnation {}): purge this member with etcd.clean (clean: true) before "
                    "re-creating the cluster".format(
                        settings["data_dir"], initial["initial-cluster-token"],
                        settings["initial_cluster_token"], settings["incarnation"],
                    )
                )
            why = "{} (kept: the data dir holds a member)".format(initial["initial-cluster-state"])
        else:
            initial, why = _derive_initial(settings, probe_timeout)
        version = __salt__["pkg.version"](package) if package else None
        config = __utils__["etcd_pillar.member_config"](settings, initial, version or None)
        contents = HEADER + yaml.safe_dump(config, default_flow_style=False, sort_keys=False)
        file_ret = __states__["file.managed"](
            name=name, contents=contents, user=user, group=group, mode=mode
        )
    except (CommandExecutionError, SaltInvocationError) as err:
        ret.update(result=False, comment=str(err))
        return ret
    return _from_file_state(ret, file_ret, "initial-cluster-state " + why)


def env_managed(name, source, probe_timeout=2):
    """
    Ensure the etcdctl environment file (``ETCDCTL_*`` and the ``e``/``em`` aliases)
    points at the cluster's voting members: a learner serves no client request.

    name
        Path of the file, e.g. ``/etc/profile.d/etcdctl.sh``.

    source
        Its Jinja template, given ``endpoints`` (comma-separated) and ``paths``.

    probe_timeout
        Seconds to wait for the cluster when reading which members vote.
    """
    ret = {"name": name, "changes": {}, "result": True, "comment": ""}
    try:
        settings = _settings()
        members = None
        tls = __utils__["etcd_pillar.client_tls_files"]()
        if all(__salt__["file.file_exists"](path) for path in tls.values()):
            try:
                members = __salt__["etcd_cluster.members"](request_timeout=probe_timeout)
            except CommandExecutionError:
                members = None  # no cluster to ask yet: the pillar members are the voters
        endpoints = __utils__["etcd_pillar.voting_client_urls"](settings, members)
        file_ret = __states__["file.managed"](
            name=name,
            source=source,
            template="jinja",
            context={"endpoints": ",".join(endpoints), "paths": settings["paths"]},
            user="root",
            group="root",
            mode="0644",
        )
    except (CommandExecutionError, SaltInvocationError) as err:
        ret.update(result=False, comment=str(err))
        return ret
    return _from_file_state(ret, file_ret, "endpoints: " + ", ".join(endpoints))
