# -*- coding: utf-8 -*-
# vim: ft=sls
# root's etcd credentials on this member (root:<root_password>, 0600 root): what etcdctl
# (ETCDCTL_USER, etcd/env.sls) and the formula's client here log in with once salt-run
# etcd.auth has turned authentication on. Read from pillar by the state, never rendered here.
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import etcd with context %}

etcd-auth-root-credentials-managed:
  etcd_auth.root_credentials_managed:
    - name: {{ etcd.member.paths.root_credentials_file }}

# with authentication on etcd's gateway refuses a client certificate with a CN: a member
# built before the formula's had none fails here, before salt-run etcd.auth enables it
etcd-auth-client-certificate-checked:
  etcd_auth.client_certificate_without_cn:
    - name: {{ etcd.member.paths.client_cert_file }}
