# -*- coding: utf-8 -*-
# vim: ft=sls
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import etcd with context %}

etcd-group-present:
  group.present:
    - name: {{ etcd.group }}
    - system: True

etcd-user-present:
  user.present:
    - name: {{ etcd.user }}
    - gid: {{ etcd.group }}
    - system: True
    - createhome: False
    - require:
      - group: etcd-group-present

etcd-config-dir-managed:
  file.directory:
    - name: {{ etcd.member.paths.config_dir }}
    - user: root
    - group: root
    - mode: '0755'

# etcd refuses a data dir others can read (it warns and fixes it to 0700 itself)
etcd-data-dir-managed:
  file.directory:
    - name: {{ etcd.member.data_dir }}
    - user: {{ etcd.user }}
    - group: {{ etcd.group }}
    - mode: '0700'
    - makedirs: True
    - require:
      - user: etcd-user-present
