"""
A member's root credentials file (``etcd/auth.sls``): ``root:<root_password>`` of its
cluster's pillar, root's and 0600, where etcdctl's environment (ETCDCTL_USER) and the
formula's client on the member read it once authentication is on (``salt-run etcd.auth``).
The password is read from pillar here: it is never rendered into the SLS, nor shown in
``changes`` or ``comment``.

.. code-block:: yaml

    etcd-auth-root-credentials-managed:
      etcd_auth.root_credentials_managed:
        - name: /etc/etcd/root.credentials
"""

import os

from salt.exceptions import CommandExecutionError, SaltInvocationError

__virtualname__ = "etcd_auth"


def __virtual__():
    if "etcd_settings.root_credentials" not in __utils__:
        return (False, "etcd_auth needs the formula's _utils (etcd_settings)")
    return __virtualname__


def root_credentials_managed(name):
    """
    Ensure ``name`` holds root's etcd credentials from this member's cluster pillar
    (``root_password``), mode 0600, owned by root; removed when the pillar has none.

    name
        The file (etcd_settings.PATHS root_credentials_file).
    """
    ret = {"name": name, "changes": {}, "result": True, "comment": ""}
    try:
        etcd_pillar = __utils__["etcd_validate.plain"](__salt__["config.get"]("etcd", {}))
        cluster = __utils__["etcd_settings.cluster_of"](etcd_pillar, __opts__["id"])
        if cluster is None:
            raise SaltInvocationError("minion {} is in no cluster of pillar etcd:clusters".format(
                __opts__["id"]))
        # a root_password given as an sdb URI is read here, with this member's sdb profiles
        credentials = __utils__["etcd_settings.root_credentials"](
            cluster, lambda uri: __salt__["sdb.get"](uri, strict=True))
        wanted = "{}:{}\n".format(*credentials) if credentials else None
        try:
            with open(name) as handle:
                current = handle.read()
            found = os.stat(name)
            attributes_ok = (found.st_uid, found.st_gid, found.st_mode & 0o777) == (0, 0, 0o600)
        except FileNotFoundError:
            current, attributes_ok = None, True
        if current == wanted and attributes_ok:
            ret["comment"] = "root's etcd credentials in {} are {}".format(
                name, "the pillar's" if wanted else "absent, as the pillar has none")
            return ret
        what = "removed" if wanted is None else ("written" if current != wanted else "mode fixed")
        ret["changes"] = {"credentials": what}
        if __opts__["test"]:
            ret.update(result=None, comment="root's etcd credentials in {} would be {}".format(
                name, what))
            return ret
        if wanted is None:
            os.remove(name)
        else:
            temporary = "{}.{}.new".format(name, os.getpid())
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(wanted)
            os.chown(temporary, 0, 0)
            os.chmod(temporary, 0o600)
            os.replace(temporary, name)
        ret["comment"] = "root's etcd credentials in {} {}".format(name, what)
    except (CommandExecutionError, SaltInvocationError, OSError, ValueError) as err:
        ret.update(result=False, changes={}, comment=str(err))
    return ret


def client_certificate_without_cn(name):
    """
    Require that this member's client certificate ``name`` carries no CN: once etcd's
    authentication is on, its gateway (the formula's client, patroni) refuses a request
    from a certificate with one. A member whose certificate has a CN was built before the
    formula issued client certificates without (and before peers had a CA of their own):
    it must be moved to that trust model (a CA rotation) before ``salt-run etcd.auth``.
    Changes nothing.

    name
        The member's client certificate (etcd_settings.PATHS client_cert_file).
    """
    ret = {"name": name, "changes": {}, "result": True, "comment": ""}
    if __opts__["test"] and not os.path.exists(name):
        ret.update(result=None, comment="{}: checked once it is issued".format(name))
        return ret
    try:
        with open(name, "rb") as handle:
            cert = __utils__["etcd_pki.load_certificate"](handle.read())
    except (OSError, ValueError) as exc:
        ret.update(result=False, comment="{}: no client certificate to check ({})".format(name, exc))
        return ret
    cn = __utils__["etcd_pki.cert_identity"](cert)["cn"]
    if cn:
        ret.update(result=False, comment=(
            "{} carries CN {!r}: etcd's gateway refuses it once authentication is on. This "
            "member was built before the formula's client certificates had no CN: move the "
            "cluster to the current trust model (a CA rotation) before salt-run etcd.auth; "
            "nothing was changed".format(name, cn)))
        return ret
    ret["comment"] = "{} carries no CN: it serves with authentication on".format(name)
    return ret
