# -*- coding: utf-8 -*-
# vim: ft=sls
# vip-manager's DCS endpoints (the voting members) and TLS files, then a restart.
#   version 1 (Debian's 1.0.2): the VIP_* environment file its unit reads; it speaks
#     etcd's v2 API, so the cluster needs enable_v2 (etcd < 3.6).
#   version 2: the YAML config file (--config), etcd's v3 API.
# With ip, interface and trigger_key in pillar, the VIP settings are written too (else
# they are left as they are in the file).
{%- from tpldir ~ "/map.jinja" import clients with context %}
{%- set vip = clients.vip_manager %}
{%- set version = vip.version | int %}
{%- set vip_settings = vip.ip and vip.interface and vip.trigger_key %}
{%- set trigger_value = vip.trigger_value or grains.id %}

include:
  - etcd.client

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
{%-   if vip_settings %}
        VIP_IP: '"{{ vip.ip }}"'
        VIP_MASK: '"{{ vip.netmask }}"'
        VIP_IFACE: '"{{ vip.interface }}"'
        VIP_KEY: '"{{ vip.trigger_key }}"'
        VIP_HOST: '"{{ trigger_value }}"'
{%-   endif %}
    - require:
      - sls: etcd.client
{%- elif version == 2 %}

{#- its etcd user (salt-run etcd.auth creates it), read on the trigger key only: the
    password is read from pillar by the state, never rendered here #}
{%-   set auth_user = vip.username or ('vip-manager-' ~ vip.name) %}
{%-   set with_auth = vip.password and vip.trigger_key %}
etcd-clients-vip-manager-config-managed:
  etcd_clients.vip_manager_config_managed:
    - name: {{ vip.config or '/etc/default/vip-manager.yml' }}
    - settings:
        dcs-type: etcd
        dcs-endpoints: {{ vip.endpoints | json }}
        etcd-ca-file: {{ vip.cacert }}
        etcd-cert-file: {{ vip.cert }}
        etcd-key-file: {{ vip.key }}
{%-   if with_auth %}
        etcd-user: {{ auth_user }}
{%-   endif %}
{%-   if vip_settings %}
        ip: {{ vip.ip }}
        netmask: {{ vip.netmask }}
        interface: {{ vip.interface }}
        trigger-key: {{ vip.trigger_key }}
        trigger-value: {{ trigger_value }}
{%-   endif %}
{%-   if with_auth %}
    - secrets:
        etcd-password: etcd:clusters:{{ vip.cluster }}:clients:{{ vip.name }}:password
{%-   endif %}
    - require:
      - sls: etcd.client
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
{%-   if version == 1 %}
      - file: etcd-clients-vip-manager-config-managed
{%-   else %}
      - etcd_clients: etcd-clients-vip-manager-config-managed
{%-   endif %}
      # it reads its TLS files only at start: a new certificate or CA bundle (a renewal,
      # a CA rotation) needs a restart
      - sls: etcd.client
{%- endif %}
