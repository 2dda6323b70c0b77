"""`archiver status [--json]`: what the daemon did last and will do next, per source.

Read from the state file the daemon keeps in the archive folder, so it works from
any process, without the passphrase and without disturbing a running daemon.
Whether a daemon is running is asked of the daemon's lock, not of the file,
since a killed daemon cannot update its file.
"""

from __future__ import annotations

import argparse
from typing import Any

from archiver.cli.common import PlainTable, console, print_json, say, wants_json
from archiver.config import Config, load_config
from archiver.daemon.lock import daemon_running
from archiver.daemon.state import RETENTION_JOB, VERIFY_JOB, read_state, sync_job_id
from archiver.store.repository import Repository


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "status",
        parents=[parent],
        help="the daemon's last and next runs per source, errors and backlog",
    )
    p.set_defaults(func=run)


def collect(cfg: Config) -> dict[str, Any]:
    """The status report as data (the --json output)."""
    path = cfg.archive.path
    Repository.read_info(path)
    pid = daemon_running(path)
    state = read_state(path) or {}
    jobs: dict[str, Any] = state.get("jobs") or {}
    running = pid is not None

    def job(jid: str) -> dict[str, Any]:
        info = dict(jobs.get(jid) or {})
        if not running:  # nothing is scheduled without a daemon; a run it left unfinished is not running
            info["next_run"] = None
            info["running"] = False
        return info

    sources = []
    for src in cfg.sources:
        info = job(sync_job_id(src.name))
        sources.append(
            {
                "name": src.name,
                "type": src.type,
                "interval": src.interval,
                "last_start": info.get("last_start"),
                "last_end": info.get("last_end"),
                "last_success": info.get("last_success"),
                "last_result": info.get("last_result"),
                "last_error": info.get("last_error"),
                "errors": info.get("errors", 0),
                "runs": info.get("runs", 0),
                "running": bool(info.get("running")),
                "progress": info.get("progress"),
                # Connectors do not count what is left on the server before fetching it, so the
                # backlog is unknown; `complete` says whether the last run reached the source's end.
                "backlog": None,
                "complete": info.get("complete"),
                "next_run": info.get("next_run"),
            }
        )
    daemon = dict(state.get("daemon") or {})
    daemon.update(running=running, pid=(pid or daemon.get("pid")) if running else None)
    return {
        "archive": str(path),
        "daemon": daemon,
        "reload": state.get("reload"),
        "sources": sources,
        "retention": job(RETENTION_JOB),
        "verify": job(VERIFY_JOB),
        "updated_at": state.get("updated_at"),
    }


def run(args: argparse.Namespace) -> int:
    cfg = load_config(getattr(args, "config", None))
    report = collect(cfg)
    if wants_json(args):
        print_json(report)
        return 0
    d = report["daemon"]
    if d["running"]:
        say(f"daemon: running (pid {d.get('pid')}, since {d.get('started_at')}, http {d.get('listen')})")
    elif d.get("stopped_at") or d.get("started_at"):
        say(f"daemon: not running (last stopped {d.get('stopped_at') or 'unknown, it did not stop cleanly'})")
    else:
        say("daemon: not running (never started on this archive)")
    reload = report["reload"]
    if reload and not reload.get("ok"):
        say(f"last reload REFUSED at {reload.get('at')}: {reload.get('error')}")
    table = PlainTable("source", "type", "last sync", "result", "errors", "last error", "next run", box=None)
    for s in report["sources"]:
        r = s["last_result"] or {}
        result = (
            "running" + (f" ({s['progress']} so far)" if s.get("progress") else "")
            if s["running"]
            else (
                f"{r.get('imported', 0)} new, {r.get('duplicates', 0)} seen, {r.get('failed', 0)} failed" if r else "-"
            )
        )
        if s["complete"] is False and not s["running"]:
            result += " (stopped early)"
        table.add_row(
            s["name"],
            s["type"],
            s["last_end"] or "never",
            result,
            str(s["errors"]),
            (s["last_error"] or "")[:80],
            s["next_run"] or "-",
        )
    console.print(table)
    for name in ("retention", "verify"):
        j = report[name]
        last = j.get("last_end") or "never"
        outcome = "error: " + str(j["last_error"]) if j.get("last_error") else ("ok" if j.get("last_end") else "")
        say(f"{name}: last {last} {outcome}; next {j.get('next_run') or '-'}")
    return 0
