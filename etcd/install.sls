# -*- coding: utf-8 -*-
# vim: ft=sls
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import etcd with context %}

etcd-packages-installed:
  pkg.installed:
    - pkgs:
{%- if etcd.pkg.version %}
      - {{ etcd.pkg.server }}: {{ etcd.pkg.version }}
{%- else %}
      - {{ etcd.pkg.server }}
{%- endif %}
{%- if etcd.pkg.client != etcd.pkg.server %}
      - {{ etcd.pkg.client }}
{%- endif %}

# The package's own unit may start a default etcd (on localhost:2379) and is enabled:
# stop and disable it, only until our unit (etcd/service.sls) takes its name.
{%- if not salt['file.file_exists'](etcd.service.unit_file) %}

etcd-packaged-service-dead:
  service.dead:
    - name: {{ etcd.service.packaged_name }}
    - enable: False
    - require:
      - pkg: etcd-packages-installed
{%- endif %}
