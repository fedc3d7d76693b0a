"""
Pillar ``etcd:clusters:<cluster>:clients``: which minions' endpoint lists the runner keeps.
"""

import etcd_pillar


def pillar(clients, **cluster):
    return {"clusters": {"etcd": dict(
        {"members": {"h1": {"seq": 1, "address": "10.77.0.11"}}, "clients": clients}, **cluster)}}


def test_clients_with_targets_are_valid():
    errors, _ = etcd_pillar.validate(pillar(
        {"patroni": {"target": "pg*"}, "prometheus": {"target": "mon", "tgt_type": "list"},
         "vip_manager": {"target": "pg*", "version": 2}}))
    assert errors == []


def test_clients_name_every_mistake():
    errors, _ = etcd_pillar.validate(pillar(
        {"patroni": {"tgt_type": "glob", "hots": "x"}, "pgbouncer": {"target": "x"},
         "vip_manager": {"target": "pg*", "version": 3}}))
    assert "etcd:clusters:etcd:clients: unknown key 'pgbouncer'" in errors[0]
    assert any("clients:patroni: unknown key 'hots'" in e for e in errors)
    assert any("clients:patroni:target: None: expected a target expression" in e for e in errors)
    assert any("clients:vip_manager:version: 3: expected 1" in e for e in errors)


def test_vip_manager_1_needs_the_v2_api():
    errors, _ = etcd_pillar.validate(pillar({"vip_manager": {"target": "pg*", "version": 1}}))
    assert errors == ["etcd:clusters:etcd:clients:vip_manager:version: 1: vip-manager 1.x speaks "
                      "etcd's v2 API only: expected enable_v2: true on the cluster (etcd < 3.6), "
                      "or version: 2"]
    errors, _ = etcd_pillar.validate(pillar({"vip_manager": {"target": "pg*"}}, enable_v2=True))
    assert errors == []
