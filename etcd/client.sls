# -*- coding: utf-8 -*-
# vim: ft=sls
# On a client minion (patroni, vip-manager: pillar etcd:clusters:<cluster>:clients), which is
# not an etcd member: the cluster's CA bundle and a client certificate (clientAuth) for each
# kind that targets it, at that kind's paths and owned by its user. Keys are made here and
# never leave the minion; the CA server signs under policy etcd-client (its `minions` must
# match the client minions). etcd/clients/patroni.sls and vip_manager.sls include this.
{%- from tpldir ~ "/clients/map.jinja" import clients with context %}
{%- set issued = [] %}
{%- for kind in ('patroni', 'vip_manager') %}
{%-   set spec = clients[kind] %}
{%-   if spec.here and spec.cert not in issued %}
{%-     do issued.append(spec.cert) %}

etcd-client-{{ kind }}-dir-managed:
  file.directory:
    - names: {{ [salt['file.dirname'](spec.cert), salt['file.dirname'](spec.key), salt['file.dirname'](spec.cacert)] | unique | list | json }}
    - user: root
    - group: root
    - mode: '0755'
    - makedirs: True

etcd-client-{{ kind }}-ca-bundle-managed:
  etcd_cert.ca_bundle_managed:
    - name: {{ spec.cacert }}
    - ca_server: {{ spec.pki.ca_server }}
    - require:
      - file: etcd-client-{{ kind }}-dir-managed

etcd-client-{{ kind }}-cert-managed:
  etcd_cert.managed:
    - name: {{ spec.cert }}
    - key: {{ spec.key }}
    - usage: client
    - ca_server: {{ spec.pki.ca_server }}
    - signing_policy: etcd-client
    - common_name: {{ grains.id }}-{{ kind | replace('_', '-') }}
    - days_valid: {{ spec.pki.days_valid }}
    - days_remaining: {{ spec.pki.days_remaining }}
    - key_algo: {{ spec.pki.key_algo }}
    - key_size: {{ spec.pki.key_size }}
    - user: {{ spec.user }}
    - group: root
    - ca_file: {{ spec.cacert }}
    - require:
      - etcd_cert: etcd-client-{{ kind }}-ca-bundle-managed
{%-   endif %}
{%- endfor %}
{%- if not issued %}

etcd-client-none:
  test.succeed_without_changes:
    - name: no etcd client kind targets {{ grains.id }}
{%- endif %}
