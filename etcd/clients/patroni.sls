# -*- coding: utf-8 -*-
# vim: ft=sls
# Patroni's DCS section (hosts = the voting members, TLS files from etcd.client), then a
# reload. `etcd3:` (v3 API), or `etcd:` (v2 API) when the cluster's vip-manager is 1.x:
# v2 and v3 are separate key spaces in etcd, and vip-manager 1.x reads patroni's leader key
# through v2 only. The other section is dropped (patroni would pick one of them). Patroni
# 3.x follows membership changes by itself between restarts (it reads etcd's member list);
# this file is what it starts from next time.
{%- from tpldir ~ "/map.jinja" import clients with context %}
{%- set patroni = clients.patroni %}
{%- set vip = clients.vip_manager %}
{%- set section = 'etcd' if vip.target and vip.version | int == 1 else 'etcd3' %}
{#- its etcd user (salt-run etcd.auth creates it): the password is read from pillar by the
    state, never rendered here (patroni.password is "(hidden)" in these settings) #}
{%- set auth_user = patroni.username or ('patroni-' ~ patroni.scope if patroni.scope else none) %}
{%- set with_auth = auth_user and patroni.password and section == 'etcd3' %}
include:
  - etcd.client

# only the DCS section is written, and shown: the rest of the file (PostgreSQL's
# passwords) is never read into the SLS nor shown in changes
etcd-clients-patroni-dcs-managed:
  etcd_clients.patroni_dcs_managed:
    - name: {{ patroni.config }}
    - section: {{ section }}
    - dcs:
        hosts: {{ patroni.hosts | json }}
        protocol: https
        cacert: {{ patroni.cacert }}
        cert: {{ patroni.cert }}
        key: {{ patroni.key }}
{%- if with_auth %}
        username: {{ auth_user }}
    - secrets:
        password: etcd:clusters:{{ patroni.cluster }}:clients:{{ patroni.name }}:password
{%- endif %}
    - user: {{ patroni.user }}
    - group: {{ patroni.user }}
    - require:
      - sls: etcd.client

etcd-clients-patroni-reloaded:
  module.run:
    - service.reload:
      - name: {{ patroni.service }}
    - onlyif: systemctl is-active --quiet {{ patroni.service }}
    - onchanges:
      - etcd_clients: etcd-clients-patroni-dcs-managed
      # a new certificate or CA bundle (etcd.client: a renewal, a CA rotation)
      - sls: etcd.client
