# -*- coding: utf-8 -*-
# vim: ft=sls
# For the CA server: the salt-master's etcd client certificate (salt-run etcd.*), signed
# here by the formula's CA (identity etcd_pki "admin": no CN, its URI SAN). The master reads
# these files, so the CA server minion runs on the master's machine (or set etcd_admin_tls in
# the master config), and etcd-client (etcdctl, or etcdutl) reads the snapshots there.
{%- set pki = salt['etcd_cluster.pki_settings']() %}

etcd-admin-tools-installed:
  pkg.installed:
    - name: etcd-client

etcd-admin-dir-managed:
  file.directory:
    - name: {{ pki.admin_dir }}
    - user: root
    - group: root
    - mode: '0700'
    - makedirs: True

etcd-admin-ca-managed:
  file.managed:
    - name: {{ pki.admin_tls.ca_file }}
    - source: {{ pki.ca_dir }}/ca-bundle.crt
    - mode: '0644'
    - require:
      - file: etcd-admin-dir-managed

etcd-admin-certificate-managed:
  etcd_cert.certificates_managed:
    - name: the master's etcd admin certificate
    - ca_server: {{ pki.ca_server }}
    - ca_file: {{ pki.admin_tls.ca_file }}
    - key_algo: {{ pki.key_algo }}
    - key_size: {{ pki.key_size }}
    - days_remaining: {{ pki.days_remaining }}
    - certificates:
      - {usage: admin, cert: {{ pki.admin_tls.cert_file }}, key: {{ pki.admin_tls.key_file }}, user: root, group: root}
    - require:
      - file: etcd-admin-ca-managed

# its notAfter for prometheus (the etcdFormulaCertificateExpiring alerts): the master's
# certificate serves every cluster of the pillar
etcd-admin-expiry-exported:
  etcd_cert.expiry_exported:
    - name: etcd_formula_certificates_admin.prom
    - cluster: all
    - certificates:
      - {certificate: admin, cert: {{ pki.admin_tls.cert_file }}}
    - require:
      - etcd_cert: etcd-admin-certificate-managed
