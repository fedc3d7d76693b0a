# -*- coding: utf-8 -*-
# vim: ft=sls
# etcdctl for root on every member: `e put a 10; e get a; e del a`.
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import etcd with context %}

etcd-env-file-managed:
  etcd_config.env_managed:
    - name: {{ etcd.member.paths.env_file }}
