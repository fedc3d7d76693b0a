# -*- coding: utf-8 -*-
# vim: ft=sls
# Keys are generated here and never leave this member; the CA server signs the
# certificates (x509_v2 remote signing, policies etcd-peer/-server/-client).
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import etcd with context %}
{%- set member = etcd.member %}
{%- set pki = member.pki %}

etcd-pki-dir-managed:
  file.directory:
    - name: {{ member.paths.pki_dir }}
    - user: root
    - group: {{ etcd.group }}
    - mode: '0755'
    - makedirs: True

etcd-pki-ca-bundle-managed:
  etcd_cert.ca_bundle_managed:
    - name: {{ member.paths.ca_file }}
    - ca_server: {{ pki.ca_server }}
    - require:
      - file: etcd-pki-dir-managed

{#- peer and server files belong to etcd; the client pair (etcdctl, the formula) to root #}
{%- for usage, owner, cn in [('peer', etcd.user, member.member_name),
                             ('server', etcd.user, member.member_name),
                             ('client', 'root', member.member_name ~ '-client')] %}

etcd-pki-{{ usage }}-cert-managed:
  etcd_cert.managed:
    - name: {{ member.paths[usage ~ '_cert_file'] }}
    - key: {{ member.paths[usage ~ '_key_file'] }}
    - usage: {{ usage }}
    - ca_server: {{ pki.ca_server }}
    - signing_policy: etcd-{{ usage }}
    - common_name: {{ cn }}
    - address: {{ member.address }}
    - days_valid: {{ pki.days_valid }}
    - days_remaining: {{ pki.days_remaining }}
    - key_algo: {{ pki.key_algo }}
    - key_size: {{ pki.key_size }}
    - user: {{ owner }}
    - group: {{ etcd.group if owner != 'root' else 'root' }}
    - ca_file: {{ member.paths.ca_file }}
    - require:
      - etcd_cert: etcd-pki-ca-bundle-managed
{%- endfor %}
