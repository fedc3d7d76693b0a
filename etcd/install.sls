# -*- coding: utf-8 -*-
# vim: ft=sls
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import etcd with context %}

{#- The etcd version of a member that runs changes only through salt-run etcd.upgrade (one
    member at a time, under etcd's rules), which hands its version as pillar etcd_upgrade:
    a highstate that would install another version on a running member is refused. #}
{%- set upgrade = (pillar.get('etcd_upgrade') or {}).get('version') %}
{%- set installed = salt['pkg.version'](etcd.pkg.server) %}
{%- set pinned = etcd.pkg.version | string if etcd.pkg.version else none %}
{%- set running = installed and salt['service.status'](etcd.service.name) %}
{%- if upgrade is not none and not (upgrade is string
      and upgrade | regex_match('^([0-9]+:)?[0-9]+[.][0-9]+[.][0-9]+(-[A-Za-z0-9.+~]+)?[*]?$')) %}

etcd-packages-installed:
  test.fail_without_changes:
    - name: "etcd_upgrade:version: expected an etcd version like 3.5.30 or a package version like 3.5.30-2"
{%- elif running and pinned and not upgrade and '*' not in pinned
      and salt['pkg.version_cmp'](installed, pinned) != 0 %}

etcd-packages-installed:
  test.fail_without_changes:
    - name: {{ ("etcd-server " ~ installed ~ " runs here and pillar etcd:pkg:version says "
                ~ pinned ~ ": a running member changes its etcd version only through salt-run"
                ~ " etcd.upgrade version=" ~ pinned ~ " (one member at a time); nothing was"
                ~ " changed") | json }}
{%- else %}
{%-   set wanted = upgrade or pinned %}

etcd-packages-installed:
  pkg.installed:
    - pkgs:
{%-   if wanted %}
      - {{ etcd.pkg.server }}: {{ wanted | json }}
{%-   else %}
      - {{ etcd.pkg.server }}
{%-   endif %}
{%-   if etcd.pkg.client != etcd.pkg.server %}
{%-     if upgrade %}
      - {{ etcd.pkg.client }}: {{ upgrade | json }}
{%-     else %}
      - {{ etcd.pkg.client }}
{%-     endif %}
{%-   endif %}
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
