"""
The etcd clients' own config files, changed where they name etcd and nowhere else, without
ever showing what else they hold (patroni's config carries PostgreSQL's passwords: a
file.serialize of the whole file would put them in ``changes``, the master's job cache and
the rendered SLS).

- ``patroni_dcs_managed``: patroni's DCS section (``etcd3``, or ``etcd`` for the v2 API);
- ``vip_manager_config_managed``: vip-manager 2.x's YAML keys (its etcd user's password too).

.. code-block:: yaml

    etcd-clients-patroni-dcs-managed:
      etcd_clients.patroni_dcs_managed:
        - name: /etc/patroni/config.yml
        - section: etcd3
        - dcs: {hosts: [10.77.0.11:2379], protocol: https, cacert: ..., cert: ..., key: ...}
"""

import grp
import os
import pwd

import yaml
from salt.exceptions import CommandExecutionError, SaltInvocationError

__virtualname__ = "etcd_clients"

DCS_SECTIONS = ("etcd", "etcd3")
# Keys of a DCS section whose values never show in changes or comments.
SECRET_KEYS = ("password", "etcd-password")


def __virtual__():
    return __virtualname__


def _shown(section):
    return {k: ("(hidden)" if k in SECRET_KEYS else v) for k, v in (section or {}).items()}


def _read_mapping(name, what):
    if not os.path.exists(name):
        return {}
    with open(name) as handle:
        current = yaml.safe_load(handle) or {}
    if not isinstance(current, dict):
        raise CommandExecutionError("{} is no YAML mapping: not {}".format(name, what))
    return current


def _with_secrets(values, secrets, what):
    """``values`` with each ``secrets`` key read from its pillar path (never rendered)."""
    found = dict(values or {})
    for key, path in (secrets or {}).items():
        value = __salt__["config.get"](path)
        if not value:
            raise CommandExecutionError("no value at pillar {} ({}'s {})".format(path, what, key))
        found[key] = value
    return found


def _managed(ret, name, new, changes, user, group, mode, said):
    """Write the YAML mapping ``new`` to ``name`` (atomically, owner and mode first) when
    ``changes`` or the file's owner or mode say so; ``said``: (as wanted, would be written,
    has been written) comments."""
    mode = str(mode)
    try:
        uid, gid = pwd.getpwnam(user).pw_uid, grp.getgrnam(group).gr_gid
    except KeyError as exc:
        raise CommandExecutionError("no such user or group for {}: {}".format(name, exc)) from None
    found = os.stat(name) if os.path.exists(name) else None
    attributes_wrong = found is not None and (
        (found.st_uid, found.st_gid, found.st_mode & 0o777) != (uid, gid, int(mode, 8)))
    if not changes and not attributes_wrong:
        ret["comment"] = said[0]
        return ret
    ret["changes"] = changes or {"attributes": {"user": user, "group": group, "mode": mode}}
    if __opts__["test"]:
        ret.update(result=None, comment=said[1])
        return ret
    os.makedirs(os.path.dirname(name), exist_ok=True)
    temporary = name + ".new"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, int(mode, 8))
    with os.fdopen(fd, "w") as handle:
        yaml.safe_dump(new, handle, default_flow_style=False)
    os.chown(temporary, uid, gid)
    os.chmod(temporary, int(mode, 8))
    os.replace(temporary, name)
    ret["comment"] = said[2]
    return ret


def patroni_dcs_managed(name, section, dcs, user="postgres", group="postgres", mode="0600",
                        secrets=None):
    """
    Ensure patroni's config file ``name`` has its DCS section ``section`` (``etcd3``, or
    ``etcd`` for the v2 API) equal to ``dcs``, and no other DCS section (patroni would pick
    one of them); every other key of the file is kept as it is. ``changes`` shows the DCS
    section only, with passwords hidden.

    name
        Patroni's config file.
    section
        ``etcd3`` or ``etcd``.
    dcs
        The section's settings (hosts, protocol, TLS files).
    secrets
        {key: pillar path} of section values read from pillar here (never rendered into the
        SLS), e.g. ``{password: etcd:clusters:etcd:clients:patroni:password}``.
    user, group, mode
        Owner and mode of the file. Default postgres, postgres, 0600.
    """
    ret = {"name": name, "changes": {}, "result": True, "comment": ""}
    try:
        if section not in DCS_SECTIONS:
            raise SaltInvocationError("section {!r}: expected etcd3 or etcd".format(section))
        wanted = _with_secrets(dcs, secrets, "patroni")
        current = _read_mapping(name, "patroni's config")
        old = {s: current.get(s) for s in DCS_SECTIONS if s in current}
        new = dict(current)
        for other in DCS_SECTIONS:
            new.pop(other, None)
        new[section] = wanted
        changes = {} if old == {section: wanted} else {
            "dcs": {"old": {s: _shown(v) for s, v in old.items()},
                    "new": {section: _shown(wanted)}}}
        return _managed(ret, name, new, changes, user, group, mode, (
            "{}: patroni's {} section is as wanted".format(name, section),
            "{}: patroni's {} section would be written".format(name, section),
            "{}: patroni's {} section has been written".format(name, section)))
    except (CommandExecutionError, SaltInvocationError, OSError, yaml.YAMLError) as err:
        ret.update(result=False, changes={}, comment=str(err))
    return ret


def vip_manager_config_managed(name, settings, user="root", group="root", mode="0600",
                               secrets=None):
    """
    Ensure vip-manager 2.x's YAML config ``name`` has the keys ``settings`` (its other keys
    kept); ``changes`` shows the keys that change, with ``etcd-password`` hidden.

    name
        vip-manager's config file (``--config``).
    settings
        {key: value}: dcs-type, dcs-endpoints, etcd-ca-file, etcd-cert-file, etcd-key-file,
        etcd-user, ip, netmask, interface, trigger-key, trigger-value.
    secrets
        {key: pillar path} read from pillar here, e.g. ``{etcd-password: etcd:clusters:etcd:
        clients:vip_manager:password}``.
    user, group, mode
        Owner and mode of the file. Default root, root, 0600 (it holds a password).
    """
    ret = {"name": name, "changes": {}, "result": True, "comment": ""}
    try:
        wanted = _with_secrets(settings, secrets, "vip-manager")
        current = _read_mapping(name, "vip-manager's config")
        new = dict(current, **wanted)
        differ = sorted(k for k in wanted if current.get(k) != wanted[k])
        changes = {} if not differ else {"settings": {
            "old": _shown({k: current.get(k) for k in differ if k in current}),
            "new": _shown({k: wanted[k] for k in differ})}}
        return _managed(ret, name, new, changes, user, group, mode, (
            "{}: vip-manager's settings are as wanted".format(name),
            "{}: vip-manager's settings would be written".format(name),
            "{}: vip-manager's settings have been written".format(name)))
    except (CommandExecutionError, SaltInvocationError, OSError, yaml.YAMLError) as err:
        ret.update(result=False, changes={}, comment=str(err))
    return ret
