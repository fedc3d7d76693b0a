# -*- coding: utf-8 -*-
# vim: ft=sls
# On a client minion (patroni, vip-manager: pillar etcd:clusters:<cluster>:clients, by exact
# minion id), which is no etcd member: the cluster's CA bundle and a client certificate for
# each kind that names it, at that kind's paths and owned by its user, all in one request to
# the CA server. Keys are made here and never leave the minion. etcd/clients/patroni.sls and
# vip_manager.sls include this.
{%- from tpldir ~ "/clients/map.jinja" import clients with context %}
{%- set wanted = [] %}
{%- for kind in ('patroni', 'vip_manager') %}
{%-   set spec = clients[kind] %}
{%-   if spec.here and spec.cert not in wanted | map(attribute='cert') | list %}
{%-     do wanted.append({'kind': kind, 'cert': spec.cert, 'key': spec.key, 'cacert': spec.cacert,
                          'user': spec.user, 'pki': spec.pki, 'cluster': spec.cluster}) %}
{%-   endif %}
{%- endfor %}

{%- for item in wanted %}

etcd-client-{{ item.kind }}-dir-managed:
  file.directory:
    - names: {{ [salt['file.dirname'](item.cert), salt['file.dirname'](item.key), salt['file.dirname'](item.cacert)] | unique | list | json }}
    - user: root
    - group: root
    - mode: '0755'
    - makedirs: True

etcd-client-{{ item.kind }}-ca-bundle-managed:
  etcd_cert.ca_bundle_managed:
    - name: {{ item.cacert }}
    - ca_server: {{ item.pki.ca_server }}
    - require:
      - file: etcd-client-{{ item.kind }}-dir-managed
{%- endfor %}

{%- if wanted %}

etcd-client-certificates-managed:
  etcd_cert.certificates_managed:
    - name: etcd client {{ grains.id }}
    - ca_server: {{ wanted[0].pki.ca_server }}
    - ca_file: {{ wanted[0].cacert }}
    - key_algo: {{ wanted[0].pki.key_algo }}
    - key_size: {{ wanted[0].pki.key_size }}
    - days_remaining: {{ wanted[0].pki.days_remaining }}
    - certificates:
{%-   for item in wanted %}
      - {usage: {{ item.kind }}, cert: {{ item.cert }}, key: {{ item.key }}, user: {{ item.user }}, group: root}
{%-   endfor %}
    - require:
{%-   for item in wanted %}
      - etcd_cert: etcd-client-{{ item.kind }}-ca-bundle-managed
{%-   endfor %}

etcd-client-expiry-exported:
  etcd_cert.expiry_exported:
    - name: etcd_formula_certificates_client.prom
    - cluster: {{ wanted[0].cluster }}
    - certificates:
{%-   for item in wanted %}
      - {certificate: {{ item.kind }}, cert: {{ item.cert }}}
{%-   endfor %}
    - require:
      - etcd_cert: etcd-client-certificates-managed
{%- else %}

etcd-client-none:
  test.succeed_without_changes:
    - name: no etcd client kind names {{ grains.id }}
{%- endif %}
