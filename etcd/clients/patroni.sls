# -*- coding: utf-8 -*-
# vim: ft=sls
# Patroni's `etcd3:` section (hosts = the voting members, TLS files), then a reload.
# Patroni 3.x follows membership changes by itself between restarts (it reads etcd's
# member list); this file is what it starts from next time.
{%- from tpldir ~ "/map.jinja" import clients with context %}
{%- set patroni = clients.patroni %}

etcd-clients-patroni-etcd3-managed:
  file.serialize:
    - name: {{ patroni.config }}
    - serializer: yaml
    - merge_if_exists: True
    - dataset:
        etcd3:
          hosts: {{ patroni.hosts | json }}
          protocol: https
          cacert: {{ patroni.cacert }}
          cert: {{ patroni.cert }}
          key: {{ patroni.key }}

etcd-clients-patroni-reloaded:
  module.run:
    - service.reload:
      - name: {{ patroni.service }}
    - onlyif: systemctl is-active --quiet {{ patroni.service }}
    - onchanges:
      - file: etcd-clients-patroni-etcd3-managed
