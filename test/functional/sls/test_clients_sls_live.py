"""
The client SLS files (etcd/clients/*.sls) rendered by Salt itself (masterless, the checkout as
file root, the formula's execution modules behind ``salt[...]``), for a client minion of a
cluster with authentication on: what each writes for its client, checked against the client's
own settings, and that no password is ever in the rendered SLS (what ``state.show_sls`` and
the master's job cache would show).
"""

import json

from local_salt import REPO, minion_opts

SECRETS = {"root": "root-pw-render-test", "vip": "vip-pw-render-test",
           "patroni": "patroni-pw-render-test"}

# vip-manager 2.x and later read these keys (its vipconfig/config.go, the Config struct's
# mapstructure tags, unchanged from 2.x to 5.x); it refuses to start without the mandatory
# ones, and wants etcd-user with etcd-password, the CA and key files with the cert file.
VIP_MANAGER_KEYS = {"ip", "netmask", "interface", "manager-type", "trigger-key", "trigger-value",
                    "dcs-type", "dcs-endpoints", "etcd-user", "etcd-password", "etcd-ca-file",
                    "etcd-cert-file", "etcd-key-file", "consul-token", "interval", "retry-after",
                    "retry-num", "verbose"}
VIP_MANAGER_MANDATORY = {"ip", "netmask", "interface", "trigger-key", "trigger-value",
                         "dcs-endpoints"}


def pillar(vip_version):
    vip = {"target": ["pg1"], "version": vip_version, "ip": "10.77.0.100", "interface": "eth0",
           "trigger_key": "/service/pg/leader"}
    if vip_version >= 2:
        vip["password"] = SECRETS["vip"]
    return {"pki": {"ca_server": "master"},
            "clusters": {"etcd": {
                "auth": True, "root_password": SECRETS["root"], "enable_v2": vip_version == 1,
                "members": {"h1": {"seq": 1, "address": "10.77.0.11"},
                            "h2": {"seq": 2, "address": "10.77.0.12"}},
                "clients": {"vip_manager": vip,
                            "patroni": {"target": ["pg1"], "scope": "pg",
                                        "password": SECRETS["patroni"]}}}}}


def show_sls(sls, etcd_pillar, tmp_path):
    import salt.loader

    opts = minion_opts("pg1", etcd_pillar, str(tmp_path))
    opts["file_roots"] = {"base": [REPO]}
    opts["grains"].update({"os_family": "Debian", "os": "Debian", "osmajorrelease": 12})
    utils = salt.loader.utils(opts)
    ret = salt.loader.minion_mods(opts, utils=utils)["state.show_sls"](sls)
    assert isinstance(ret, dict), ret  # a list is Salt's render errors
    return ret


def state_args(rendered, state_id):
    """{argument: value} of the state ``state_id``."""
    (module,) = [k for k in rendered[state_id] if not k.startswith("__")]
    return {k: v for item in rendered[state_id][module] if isinstance(item, dict)
            for k, v in item.items()}


def no_secret_in(rendered):
    text = json.dumps(rendered, default=str)
    return [name for name, secret in SECRETS.items() if secret in text]


def test_vip_manager_2_gets_its_documented_keys_and_its_user_without_the_password_shown(tmp_path):
    rendered = show_sls("etcd.clients.vip_manager", pillar(2), tmp_path)
    args = state_args(rendered, "etcd-clients-vip-manager-config-managed")
    settings = args["settings"]
    assert set(settings) <= VIP_MANAGER_KEYS, set(settings) - VIP_MANAGER_KEYS
    assert VIP_MANAGER_MANDATORY <= set(settings) | {"etcd-password"}
    assert settings["dcs-type"] == "etcd" and settings["etcd-user"] == "vip-manager-vip_manager"
    assert settings["dcs-endpoints"] == ["https://10.77.0.11:2379", "https://10.77.0.12:2379"]
    assert settings["trigger-key"] == "/service/pg/leader" and settings["trigger-value"] == "pg1"
    assert {"etcd-ca-file", "etcd-cert-file", "etcd-key-file"} <= set(settings)
    # the password: read from pillar by the state when it writes the file, never rendered
    assert args["secrets"] == {"etcd-password":
                               "etcd:clusters:etcd:clients:vip_manager:password"}
    assert no_secret_in(rendered) == []


def test_vip_manager_1_gets_its_environment_file_and_patroni_the_v2_section(tmp_path):
    rendered = show_sls("etcd.clients.vip_manager", pillar(1), tmp_path)
    values = state_args(rendered, "etcd-clients-vip-manager-config-managed")["key_values"]
    assert values["VIP_DCS_ENDPOINTS"] == '"https://10.77.0.11:2379,https://10.77.0.12:2379"'
    assert values["VIP_KEY"] == '"/service/pg/leader"' and values["VIP_HOST"] == '"pg1"'
    patroni = show_sls("etcd.clients.patroni", pillar(1), tmp_path)
    args = state_args(patroni, "etcd-clients-patroni-dcs-managed")
    # v2 has no user of etcd's v3 authentication: none is written (validation warns)
    assert args["section"] == "etcd" and "username" not in args["dcs"] and "secrets" not in args
    assert no_secret_in(rendered) == no_secret_in(patroni) == []


def test_patroni_gets_its_user_in_etcd3_without_the_password_shown(tmp_path):
    rendered = show_sls("etcd.clients.patroni", pillar(2), tmp_path)
    args = state_args(rendered, "etcd-clients-patroni-dcs-managed")
    assert args["section"] == "etcd3" and args["dcs"]["username"] == "patroni-pg"
    assert args["dcs"]["hosts"] == ["10.77.0.11:2379", "10.77.0.12:2379"]
    assert args["secrets"] == {"password": "etcd:clusters:etcd:clients:patroni:password"}
    assert no_secret_in(rendered) == []
