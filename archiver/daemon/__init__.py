"""The scheduling daemon (`archiver daemon`): syncs, retention sweeps and verifies on schedules.

One module per job: ``schedules`` turns config values into triggers, ``lock`` keeps
one daemon per archive, ``state`` is the JSON file `archiver status` reads,
``metrics`` and ``health`` serve Prometheus metrics, /healthz and /readyz, ``jobs`` is the
work itself and ``service`` ties them to APScheduler and to signals.
"""
