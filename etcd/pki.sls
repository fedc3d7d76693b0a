# -*- coding: utf-8 -*-
# vim: ft=sls
# The member's CA bundle (from the CA server's mine entry) and its certificates: peer,
# server and client, asked for in one request to the CA server (an event its reactor hands
# over: no master worker waits), issued with the identity the pillar gives this member
# (etcd_pki.identity), whatever the request says. Keys are made here and never leave it.
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import etcd with context %}
{%- set member = etcd.member %}
{%- set pki = member.pki %}
{%- set paths = member.paths %}

etcd-pki-dir-managed:
  file.directory:
    - name: {{ paths.pki_dir }}
    - user: root
    - group: {{ etcd.group }}
    - mode: '0755'
    - makedirs: True

# a member built before peers had a CA of their own is refused here, before any file
# changes (its peers trust only the clients' CA): salt-run etcd.rotate_ca moves it
etcd-pki-peer-trust-kept:
  etcd_cert.peer_trust_kept:
    - name: {{ paths.peer_cert_file }}
    - ca_server: {{ pki.ca_server }}
    - require:
      - file: etcd-pki-dir-managed

# the clients' CA (the client port trusts it) and the peers' own (the peer port trusts only it)
etcd-pki-ca-bundle-managed:
  etcd_cert.ca_bundle_managed:
    - name: {{ paths.ca_file }}
    - ca_server: {{ pki.ca_server }}
    - require:
      - etcd_cert: etcd-pki-peer-trust-kept

etcd-pki-peer-ca-bundle-managed:
  etcd_cert.ca_bundle_managed:
    - name: {{ paths.peer_ca_file }}
    - ca_server: {{ pki.ca_server }}
    - mine_function: etcd_peer_ca_cert
    - require:
      - etcd_cert: etcd-pki-peer-trust-kept

{#- peer and server files belong to etcd; the client pair (etcdctl, the formula) to root #}
etcd-pki-certificates-managed:
  etcd_cert.certificates_managed:
    - name: etcd member {{ member.member_name }}
    - ca_server: {{ pki.ca_server }}
    - ca_file: {{ paths.ca_file }}
    - key_algo: {{ pki.key_algo }}
    - key_size: {{ pki.key_size }}
    - days_remaining: {{ pki.days_remaining }}
    - certificates:
      - {usage: peer, cert: {{ paths.peer_cert_file }}, key: {{ paths.peer_key_file }},
         user: {{ etcd.user }}, group: {{ etcd.group }}, ca_file: {{ paths.peer_ca_file }}}
      - {usage: server, cert: {{ paths.server_cert_file }}, key: {{ paths.server_key_file }}, user: {{ etcd.user }}, group: {{ etcd.group }}}
      - {usage: client, cert: {{ paths.client_cert_file }}, key: {{ paths.client_key_file }}, user: root, group: root}
    - require:
      - etcd_cert: etcd-pki-ca-bundle-managed
      - etcd_cert: etcd-pki-peer-ca-bundle-managed

# each certificate's notAfter for prometheus (node_exporter's textfile collector; nothing
# where it is not installed): the etcdFormulaCertificateExpiring alerts read it
etcd-pki-expiry-exported:
  etcd_cert.expiry_exported:
    - name: etcd_formula_certificates_member.prom
    - cluster: {{ member.name }}
    - certificates:
      - {certificate: peer, cert: {{ paths.peer_cert_file }}}
      - {certificate: server, cert: {{ paths.server_cert_file }}}
      - {certificate: client, cert: {{ paths.client_cert_file }}}
    - require:
      - etcd_cert: etcd-pki-certificates-managed
