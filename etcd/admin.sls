# -*- coding: utf-8 -*-
# vim: ft=sls
# For the CA server: the salt-master's etcd client certificate (salt-run etcd.*), signed
# here with the CA key under the etcd-client policy. The master reads these files, so the
# CA server minion runs on the master's machine (or set etcd_admin_tls in the master config).
{%- set ca_dir = salt['pillar.get']('etcd:pki:ca_dir', '/etc/pki/etcd-ca') %}
{%- set admin_dir = ca_dir ~ '/admin' %}
{%- set pki = salt['pillar.get']('etcd:pki', {}) %}

etcd-admin-dir-managed:
  file.directory:
    - name: {{ admin_dir }}
    - user: root
    - group: root
    - mode: '0700'
    - makedirs: True

etcd-admin-ca-managed:
  file.managed:
    - name: {{ admin_dir }}/ca.crt
    - source: {{ ca_dir }}/ca.crt
    - mode: '0644'
    - require:
      - file: etcd-admin-dir-managed

etcd-admin-key-managed:
  x509.private_key_managed:
    - name: {{ admin_dir }}/client.key
    - algo: {{ pki.get('key_algo', 'ec') }}
    - keysize: {{ pki.get('key_size', 256) }}
    - mode: '0600'
    - require:
      - file: etcd-admin-dir-managed

etcd-admin-cert-managed:
  x509.certificate_managed:
    - name: {{ admin_dir }}/client.crt
    - private_key: {{ admin_dir }}/client.key
    - signing_private_key: {{ ca_dir }}/ca.key
    - signing_cert: {{ ca_dir }}/ca.crt
    - CN: etcd-admin
    - basicConstraints: "critical, CA:false"
    - keyUsage: "critical, digitalSignature, keyEncipherment"
    - extendedKeyUsage: clientAuth
    - days_valid: {{ pki.get('days_valid', 825) }}
    - days_remaining: {{ pki.get('days_remaining', 30) }}
    - mode: '0644'
    - require:
      - x509: etcd-admin-key-managed
