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
{%- set current = {} %}
{%- if salt['file.file_exists'](patroni.config) %}
{%-   do current.update(salt['file.read'](patroni.config) | load_yaml or {}) %}
{%- endif %}
{%- do current.pop('etcd', None) %}
{%- do current.pop('etcd3', None) %}
{%- do current.update({section: {'hosts': patroni.hosts, 'protocol': 'https',
                                 'cacert': patroni.cacert, 'cert': patroni.cert,
                                 'key': patroni.key}}) %}

include:
  - etcd.client

etcd-clients-patroni-dcs-managed:
  file.serialize:
    - name: {{ patroni.config }}
    - serializer: yaml
    - dataset: {{ current | json }}
    - user: {{ patroni.user }}
    - group: {{ patroni.user }}
    - mode: '0600'
    - makedirs: True
    - require:
      - sls: etcd.client

etcd-clients-patroni-reloaded:
  module.run:
    - service.reload:
      - name: {{ patroni.service }}
    - onlyif: systemctl is-active --quiet {{ patroni.service }}
    - onchanges:
      - file: etcd-clients-patroni-dcs-managed
