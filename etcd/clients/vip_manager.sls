# -*- coding: utf-8 -*-
# vim: ft=sls
# vip-manager's DCS endpoints (the voting members) and TLS files, then a restart.
#   version 1 (Debian's 1.0.2): the VIP_* environment file its unit reads; it speaks
#     etcd's v2 API, so the cluster needs enable_v2 (etcd < 3.6).
#   version 2: the YAML config file (--config), etcd's v3 API.
{%- from tpldir ~ "/map.jinja" import clients with context %}
{%- set vip = clients.vip_manager %}
{%- set version = vip.version | int %}

{%- if version == 1 and not vip.enable_v2 %}
etcd-clients-vip-manager-refused:
  test.fail_without_changes:
    - name: >-
        vip-manager 1.x speaks etcd's v2 API only: set enable_v2: true on cluster
        {{ vip.cluster }} (etcd < 3.6), or use vip-manager 2.x (version: 2)
{%- elif version == 1 %}

etcd-clients-vip-manager-config-managed:
  file.keyvalue:
    - name: {{ vip.config or '/etc/default/vip-manager' }}
    - separator: '='
    - append_if_not_found: True
    - key_values:
        VIP_TYPE: '"etcd"'
        VIP_DCS_TYPE: '"etcd"'
        VIP_ENDPOINT: '"{{ vip.endpoints | join(',') }}"'
        VIP_DCS_ENDPOINTS: '"{{ vip.endpoints | join(',') }}"'
        VIP_ETCD_CA_FILE: '"{{ vip.cacert }}"'
        VIP_ETCD_CERT_FILE: '"{{ vip.cert }}"'
        VIP_ETCD_KEY_FILE: '"{{ vip.key }}"'
{%- elif version == 2 %}

etcd-clients-vip-manager-config-managed:
  file.serialize:
    - name: {{ vip.config or '/etc/default/vip-manager.yml' }}
    - serializer: yaml
    - merge_if_exists: True
    - dataset:
        dcs-type: etcd
        dcs-endpoints: {{ vip.endpoints | json }}
        etcd-ca-file: {{ vip.cacert }}
        etcd-cert-file: {{ vip.cert }}
        etcd-key-file: {{ vip.key }}
{%- else %}
etcd-clients-vip-manager-refused:
  test.fail_without_changes:
    - name: "vip_manager version {{ vip.version }}: expected 1 or 2"
{%- endif %}

{%- if version in (1, 2) and (version == 2 or vip.enable_v2) %}

etcd-clients-vip-manager-restarted:
  module.run:
    - service.restart:
      - name: {{ vip.service }}
    - onlyif: systemctl is-active --quiet {{ vip.service }}
    - onchanges:
      - file: etcd-clients-vip-manager-config-managed
{%- endif %}
