# -*- coding: utf-8 -*-
# vim: ft=sls
# Our own unit (it shadows the packaged one). A change of the package, the config, the unit
# or the CA restarts etcd one member at a time; leaf certificates need no restart (etcd re-reads
# them on each new connection).
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import etcd with context %}

include:
  - {{ tplroot }}.install
  - {{ tplroot }}.pki
  - {{ tplroot }}.config

etcd-unit-file-managed:
  file.managed:
    - name: {{ etcd.service.unit_file }}
    - source: salt://{{ tplroot }}/files/etcd.service.jinja
    - template: jinja
    - context:
        etcd: {{ etcd | json }}
    - user: root
    - group: root
    - mode: '0644'

etcd-service-running:
  etcd_service.running:
    - name: {{ etcd.service.name }}
    - timeout: {{ etcd.service.health_timeout }}
    - require:
      - file: etcd-unit-file-managed
      - etcd_config: etcd-config-file-managed
    - watch:
      # a new etcd package (salt-run etcd.upgrade): the binary is replaced under a running etcd
      - sls: {{ tplroot }}.install
      - file: etcd-unit-file-managed
      - etcd_config: etcd-config-file-managed
      - etcd_cert: etcd-pki-ca-bundle-managed
      - etcd_cert: etcd-pki-peer-ca-bundle-managed
