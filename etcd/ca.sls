# -*- coding: utf-8 -*-
# vim: ft=sls
# For the CA server (pillar etcd:pki:ca_server), never an etcd member: the CA key (0600) and a
# self-signed CA certificate, created once with the CA's own key settings (ca_key_algo,
# ca_key_size) and never rewritten (or yours with ca_provided: true, only checked), published
# in the mine for the members. It signs what the pillar says each minion holds
# (_modules/etcd_ca.py, through the master's reactor: etcd/reactor/sign.sls).
etcd-ca-managed:
  etcd_cert.ca_managed:
    - name: etcd CA
