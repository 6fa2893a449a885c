"""A process that runs ``insitu`` commands quickly: it imports the CLI once, then forks a
fresh child per command (stdin /dev/null, stdout and stderr to files, its own process
group) and reports the exit code, or kills the child's group when it passes its timeout.

Protocol: one JSON request per line on stdin ``{"args", "env", "timeout", "out", "err"}``;
one JSON reply per line on stdout ``{"rc": int | null, "hung": bool}``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time


def _child(req: dict) -> None:  # type: ignore[type-arg]
    code = 97
    try:
        os.setpgid(0, 0)
        fd = os.open(os.devnull, os.O_RDONLY)
        os.dup2(fd, 0)
        for n, path in ((1, req["out"]), (2, req["err"])):
            f = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(f, n)
        sys.stdin = open(0, closefd=False)  # noqa: SIM115
        sys.stdout = open(1, "w", closefd=False, buffering=1)  # noqa: SIM115
        sys.stderr = open(2, "w", closefd=False, buffering=1)  # noqa: SIM115
        os.environ.clear()
        os.environ.update(req["env"])
        if req.get("cwd"):
            os.chdir(req["cwd"])
        sys.argv = ["insitu", *req["args"]]
        from insitu.cli import main

        try:
            main()
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:  # noqa: BLE001 - reported as output, like an uncaught exception
        import traceback

        traceback.print_exc()
        code = 96
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _serve() -> None:
    import click

    from insitu.cli import app  # every command imported once, before any fork

    ctx = click.Context(app)
    for name in app.list_commands(ctx):
        app.get_command(ctx, name)
    import importlib

    for module in ("insitu.store._sql", "insitu.engine", "insitu.models", "insitu.datasets",
                   "insitu.cli._explain", "insitu.cli._tracking", "insitu.sdk", "insitu.spec"):
        importlib.import_module(module)  # what most commands import, so each child is quick
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(req)
        deadline = time.monotonic() + req["timeout"]
        rc: int | None = None
        hung = False
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                rc = os.waitstatus_to_exitcode(status)
                break
            if time.monotonic() > deadline:
                hung = True
                try:
                    os.killpg(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                os.waitpid(pid, 0)
                break
            time.sleep(0.01)
        print(json.dumps({"rc": rc, "hung": hung}), flush=True)


if __name__ == "__main__":
    _serve()
