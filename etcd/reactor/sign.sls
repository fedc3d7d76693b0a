# -*- coding: utf-8 -*-
# vim: ft=sls
# The master's reactor for etcd/cert/request (master config):
#
#   reactor:
#     - 'etcd/cert/request':
#       - salt://etcd/reactor/sign.sls
#
# A minion asks for its certificates with an event; this hands the request to the CA server
# it names (one plain minion id, else nothing happens), with the requester's id as the master
# authenticated it (data['id']): the CA server signs with the identity the pillar gives that
# minion, whatever the request says, and answers through the mine. Nothing here waits.
{%- set request = data.get('data') or {} %}
{%- set ca_server = request.get('ca_server') %}
{%- set requester = data.get('id') %}
{%- if ca_server is string and requester is string
      and ca_server | regex_match('^([A-Za-z0-9][A-Za-z0-9_.-]{0,254})$') %}
etcd-cert-request-signed:
  local.etcd_ca.sign:
    - tgt: {{ ca_server | json }}
    - tgt_type: list
    - args:
      - requester: {{ requester | json }}
      - requests: {{ (request.get('requests') or []) | json }}
      - request_id: {{ (request.get('request_id') or '') | json }}
{%- endif %}
