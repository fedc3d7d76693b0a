# -*- coding: utf-8 -*-
# vim: ft=sls
# For the minion on the salt-master's machine (the CA server's, etcd.admin): the backup dir
# (0700) and a Salt schedule that runs `salt-run etcd.snapshot cluster=<name>` every
# etcd:backup:interval_hours, per cluster (saltutil.runner: the minion runs the runner with
# the master's config beside its own). A Salt schedule, not a systemd timer: it needs no
# unit on the master, is listed and run by hand with schedule.list / schedule.run_job, and
# persists in the minion's config.
{%- set backup = salt['etcd_cluster.backup_settings']() %}

etcd-backup-dir-managed:
  file.directory:
    - name: {{ backup.dir | json }}
    - user: root
    - group: root
    - mode: '0700'
    - makedirs: True

{%- for cluster in backup.clusters %}
{%-   if backup.interval_hours %}

etcd-backup-{{ cluster }}-scheduled:
  schedule.present:
    - name: etcd-snapshot-{{ cluster }}
    - function: saltutil.runner
    - job_args:
      - etcd.snapshot
    - job_kwargs:
        cluster: {{ cluster | json }}
    - hours: {{ backup.interval_hours }}
    - splay: 60
    - persist: True
    - require:
      - file: etcd-backup-dir-managed
{%-   else %}

etcd-backup-{{ cluster }}-unscheduled:
  schedule.absent:
    - name: etcd-snapshot-{{ cluster }}
{%-   endif %}
{%- endfor %}
