# -*- coding: utf-8 -*-
# vim: ft=sls
# For the CA server (pillar etcd:pki:ca_server), never an etcd member: the CA key and a
# self-signed CA certificate (created once, or yours with ca_provided: true), published in
# the mine for the members. The signing policies come from this minion's pillar
# x509_signing_policies (pillar.example).
etcd-ca-managed:
  etcd_cert.ca_managed:
    - name: etcd CA
