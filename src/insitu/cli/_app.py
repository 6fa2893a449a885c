"""The ``insitu`` command line."""

from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import click
from rich.table import Table

from insitu._config import load_config
from insitu._units import format_duration
from insitu.cli._common import (
    _store,
    check_output,
    console,
    err_console,
    esc,
    remote_client,
    write_bytes,
)
from insitu.errors import NotFound, UserError
from insitu.store import _records as S


def _spec_from(target: str, params: tuple[str, ...] = (), *, require: bool = False
               ) -> dict[str, Any]:
    """The spec of TARGET: a compiled spec.json, or a pipeline traced with these ``-p``
    values (its body sees them; ``require``: every required parameter needs one)."""
    from insitu.engine import bind_params, parse_cli_params

    given = parse_cli_params(list(params))
    if target.endswith(".json"):
        from insitu.spec import load_spec

        spec = load_spec(target)
        bind_params(spec, given, from_text=True)  # a value other than the compiled one: refuse
        return spec
    from insitu.sdk import compile_pipeline, load_pipeline

    return compile_pipeline(load_pipeline(target), given, from_text=True, require=require)


class _Group(click.Group):
    """A group whose heavier commands are imported only when used."""

    lazy = {"sim": ("insitu.scheduler._cli", "sim"),
            "metrics": ("insitu.cli._tracking", "metrics"),
            "compare": ("insitu.cli._tracking", "compare"),
            "models": ("insitu.cli._models", "models"),
            "tune": ("insitu.cli._tune", "tune"),
            "datasets": ("insitu.cli._datasets", "datasets"),
            "cluster": ("insitu.cli._cluster", "cluster"),
            "server": ("insitu.cli._server", "server"),
            "serve": ("insitu.cli._serve", "serve"),
            "ui": ("insitu.cli._ui", "ui"),
            "quota": ("insitu.cli._quota", "quota"),
            "schedule": ("insitu.cli._schedule", "schedule"),
            "endpoints": ("insitu.cli._endpoints", "endpoints"),
            "notebook": ("insitu.cli._notebook", "notebook"),
            "login": ("insitu.cli._remote", "login"),
            "logout": ("insitu.cli._remote", "logout")}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.lazy])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy:
            import importlib

            module, attr = self.lazy[name]
            cmd: click.Command = getattr(importlib.import_module(module), attr)
            return cmd
        return super().get_command(ctx, name)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="insitu")
@click.option("--project", default=None, metavar="NAME",
              help="The server's project to act on (default: INSITU_PROJECT, else the one "
                   "`insitu login` chose, else 'default').")
def app(project: str | None) -> None:
    """insitu: ML pipelines that run on a laptop in a minute and unchanged on a cluster.

    State lives under INSITU_HOME (default ~/.insitu). After `insitu login URL` (or with
    INSITU_SERVER and INSITU_TOKEN set) run, runs, show, logs, cancel, resume and delete act
    on that server.
    """
    if project is not None:
        from insitu.client import project_override

        project_override(project)


def _execute(engine: Any, run_id: str, no_live: bool = False) -> int:
    from insitu.cli._render import LiveProgress, print_outcome

    store = engine.store
    live = LiveProgress(console)
    if no_live:
        live.plain = True
    engine.progress = live
    try:  # Ctrl-C and SIGTERM cancel the run: Engine.execute turns them into a flag
        with live:
            rec = engine.execute(run_id)
    finally:
        engine.executor.close()
    return print_outcome(console, err_console, rec, store.list_tasks(rec.id),
                         store.list_attempts(rec.id))


def _executor(backend: str, address: str | None) -> Any:
    """The executor for ``--backend`` (local processes, or a Ray cluster)."""
    if backend == "local":
        from insitu.executor import LocalExecutor

        return LocalExecutor()
    if backend == "ray":
        try:
            from insitu.executor._ray import RayExecutor
        except ImportError:
            raise UserError("the ray backend needs Ray installed",
                            hint='pip install "ray==2.60.0"') from None
        return RayExecutor(address)
    raise UserError(f"unknown backend {backend!r}", hint="use --backend local or --backend ray")


def _engine(backend: str = "local", address: str | None = None) -> Any:
    from insitu.engine import Engine

    return Engine(_store(), _executor(backend, address), config=load_config())


def _check_target(target: str) -> None:
    """A spec file that cannot be read as text is refused naming the file (a folder, a
    binary file); the rest of TARGET's checks are the loader's."""
    if not target.endswith(".json"):
        return
    p = Path(target)
    if p.is_dir():
        raise UserError(f"spec file {target} is a folder", hint="give a spec .json file, "
                        "written by `insitu compile FILE -o spec.json`")
    if not p.exists():
        return  # the loader says it does not exist
    try:
        with open(p, "rb") as f:
            f.read().decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"spec file {target} is not text (byte {e.start} is not UTF-8)",
                        hint="give a spec written by `insitu compile FILE -o spec.json`"
                        ) from None


def _check_params(spec: dict[str, Any], pairs: tuple[str, ...]) -> None:
    """What the command line can get wrong beyond a value's type: a parameter given twice,
    a number that is not one (nan, inf)."""
    import math

    from insitu.errors import ParameterError

    seen: dict[str, str] = {}
    types = {p["name"]: p.get("type") for p in spec.get("parameters", [])}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        name = name.strip()
        if not sep:
            continue  # parse_cli_params says how to write it
        if name in seen:
            raise ParameterError(f"parameter '{name}' is given twice (-p {name}={seen[name]} "
                                 f"and -p {name}={value})", hint="give each parameter once")
        seen[name] = value
        if types.get(name) == "float":
            try:
                number = float(value)
            except ValueError:
                continue  # parse_cli_params says it is not a number
            if not math.isfinite(number):
                raise ParameterError(f"parameter '{name}' expects a finite float, got {value!r}",
                                     hint=f"pass a number, e.g. -p {name}=0.5")


@app.command()
@click.argument("target")
@click.option("-p", "--param", "params", multiple=True, metavar="NAME=VALUE",
              help="A pipeline parameter (repeatable).")
@click.option("--no-cache", is_flag=True, help="Run every step, ignoring cached outputs.")
@click.option("--backend", default=None, type=click.Choice(["local", "ray"]),
              help="Where steps run (default: local).")
@click.option("--address", default=None,
              help="The Ray cluster's address (default: RAY_ADDRESS, or `insitu cluster up`'s).")
@click.option("--plain", is_flag=True, help="Print progress as lines instead of a live table.")
@click.option("--priority", type=click.IntRange(-1_000_000, 1_000_000), default=None,
              help="On a server: among steps waiting for the project's quota, those of "
                   "runs of higher priority start first (default 0).")
def run(target: str, params: tuple[str, ...], no_cache: bool, backend: str | None,
        address: str | None, plain: bool, priority: int | None) -> None:
    """Run a pipeline: TARGET is FILE[:PIPELINE], a module[:PIPELINE], or a compiled spec.json.

    With a server (`insitu login`, or INSITU_SERVER), the run is submitted there with the
    pipeline's code, and its progress is followed here (Ctrl-C detaches; the run goes on).
    """
    _check_target(target)
    remote = remote_client()
    if remote is not None:
        from insitu.cli._remote import submit_and_follow

        if backend is not None or address is not None:
            raise UserError("--backend and --address choose where a local run goes; a run on "
                            f"the server {remote.server} uses the server's backend",
                            hint="leave them out, or run here with INSITU_SERVER= insitu run "
                                 f"{target}")
        spec = _spec_from(target, params, require=True)
        _check_params(spec, params)
        sys.exit(submit_and_follow(remote, spec, params, no_cache=no_cache, plain=plain,
                                   priority=priority))
    if priority is not None:
        raise UserError("--priority orders runs waiting for a project's quota on a server; "
                        "a run on this machine has no quota to wait for",
                        hint=f"leave it out, or log in to a server (insitu login URL) and "
                             f"run insitu run {target} --priority {priority}")
    backend = backend or "local"
    executor = _executor(backend, address)  # a local one starts its server while we compile
    try:
        from insitu.engine import Engine, parse_cli_params

        spec = _spec_from(target, params, require=True)
        engine = Engine(_store(), executor, config=load_config())
    except BaseException:
        executor.close()
        raise
    try:
        _check_params(spec, params)
    except BaseException:
        executor.close()
        raise
    rec = engine.submit(spec, parse_cli_params(list(params)), no_cache=no_cache,
                        from_text=True)
    console.print(f"run [bold]{rec.id}[/] of pipeline {esc(rec.pipeline)}")
    sys.exit(_execute(engine, rec.id, plain))


@app.command()
@click.argument("run_id")
@click.option("--address", default=None, help="The Ray cluster's address, for a Ray run.")
@click.option("--plain", is_flag=True, help="Print progress as lines instead of a live table.")
def resume(run_id: str, address: str | None, plain: bool) -> None:
    """Continue a run: only what did not finish runs; finished outputs are reused."""
    from insitu.engine import engine_alive

    remote = remote_client()
    if remote is not None:
        from insitu.cli._remote import resume_remote

        if address is not None:
            raise UserError(f"--address chooses the Ray cluster of a local run; run {run_id} "
                            f"is on the server {remote.server}, which uses its own backend",
                            hint=f"leave it out: insitu resume {run_id}")
        sys.exit(resume_remote(remote, run_id, plain))
    rec = _store().get_run(run_id)
    if rec.state == S.RUN_SUCCEEDED:
        console.print(f"run {rec.id} already succeeded; nothing to resume.")
        return
    if engine_alive(rec):
        raise UserError(f"run {rec.id} is still being run by process {rec.engine_pid} on "
                        f"{rec.engine_host}", hint=f"wait for it, or `insitu cancel {rec.id}`")
    engine = _engine(rec.backend, address)
    console.print(f"resuming run [bold]{rec.id}[/] of pipeline {esc(rec.pipeline)}")
    sys.exit(_execute(engine, rec.id, plain))


@app.command()
@click.argument("run_id")
def cancel(run_id: str) -> None:
    """Stop a run's attempts and mark it cancelled."""
    from insitu.engine import cancel_run

    remote = remote_client()
    if remote is not None:
        from insitu.cli._remote import cancel_remote

        cancel_remote(remote, run_id)
        return
    before = _store().get_run(run_id)
    if before.state in S.RUN_TERMINAL:
        console.print(f"run {before.id} is already {before.state}.")
        return
    rec, driven = cancel_run(_store(), before.id)
    if driven:
        console.print(f"run {rec.id} {rec.state}.")
    else:
        console.print(f"run {rec.id} cancelled (no engine was running it).")


@app.command()
@click.option("--pipeline", default=None, help="Only runs of this pipeline.")
@click.option("--status", "state", default=None,
              type=click.Choice(["pending", "running", "succeeded", "failed", "cancelled"]),
              help="Only runs in this state.")
@click.option("-n", "--limit", default=20, show_default=True,
              type=click.IntRange(min=1, max=1_000_000), help="At most this many runs.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def runs(pipeline: str | None, state: str | None, limit: int, as_json: bool) -> None:
    """List runs, newest first."""
    from insitu.engine import shown_state

    remote = remote_client()
    if remote is not None:
        from insitu.client._runs import list_views, run_record

        recs = [run_record(v) for v in list_views(remote, pipeline=pipeline, state=state,
                                                  limit=limit)]
    else:
        recs = _store().list_runs(pipeline=pipeline, state=state, limit=limit)
    if as_json:
        click.echo(json.dumps([{
            "id": r.id, "pipeline": r.pipeline, "state": shown_state(r), "params": r.params,
            "created_at": r.created_at, "started_at": r.started_at, "ended_at": r.ended_at,
        } for r in recs], indent=2))
        return
    from rich.text import Text

    from insitu.cli._render import clip, state_text

    rows: list[dict[str, Text | str]] = []
    for r in recs:
        st = shown_state(r)
        dur = format_duration((r.ended_at or time.time()) - r.started_at) if r.started_at \
            else "-"
        rows.append({"run": Text(r.id), "pipeline": Text(r.pipeline), "state": state_text(st),
                     "created": time.strftime("%Y-%m-%d %H:%M:%S",
                                              time.localtime(r.created_at)),
                     "duration": dur,
                     "params": Text(clip(", ".join(f"{k}={v}" for k, v in r.params.items()),
                                         60))})
    cols = ["run", "pipeline", "state", "created", "duration", "params"]
    hidden: list[str] = []

    def build() -> Table:
        t = Table()
        for c in cols:  # run ids are never cut; other cells end in an ellipsis when cut
            t.add_column(c, no_wrap=True, overflow="ellipsis",
                         min_width={"run": 12, "state": 6, "params": 6}.get(c),
                         max_width=40 if c == "pipeline" else None)
        for row in rows:
            t.add_row(*(row[c] for c in cols))
        return t

    need = {"run": max((len(r.id) for r in recs), default=12), "pipeline": 8, "state": 9,
            "created": 19, "duration": 8, "params": 8}
    for drop in ("created", "duration", "params"):  # too narrow: hide whole columns, and say so
        if sum(need[c] + 3 for c in cols) + 1 <= console.width:
            break
        cols.remove(drop)
        hidden.append(drop)
    tbl = build()
    console.print(tbl)
    if hidden and recs:
        console.print(f"[dim](too narrow for every column: {', '.join(hidden)} not shown; "
                      "widen the terminal or use --json)[/]")
    if not recs:
        console.print(f"no runs yet in project {remote.project} on {remote.server}"
                      if remote is not None else "no runs yet: try `insitu demo`")


@app.command()
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def show(run_id: str, as_json: bool) -> None:
    """A run's steps: states, durations, attempts, cache hits, resources asked vs used."""
    import dataclasses

    from insitu.cli._render import state_text, summary_table
    from insitu.engine import shown_state, shown_task_state

    remote = remote_client()
    if remote is not None:
        from insitu.client._runs import get_attempts, get_steps, get_view, run_record

        view = get_view(remote, run_id)
        rec = run_record(view)
        state = rec.state  # the server shows it as every command does
        tasks = get_steps(remote, rec.id)
        attempts = get_attempts(remote, rec.id, tasks)
    else:
        store = _store()
        rec = store.get_run(run_id)
        state = shown_state(rec)  # the same everywhere: "interrupted" once its engine is gone
        tasks = [dataclasses.replace(t, state=shown_task_state(state, t.state))
                 for t in store.list_tasks(rec.id)]
        attempts = [dataclasses.replace(a, state=shown_task_state(state, a.state))
                    for a in store.list_attempts(rec.id)]
    if as_json and remote is not None:
        click.echo(json.dumps({"run": {k: v for k, v in view.items() if k != "tasks"},
                               "tasks": [dataclasses.asdict(t) for t in tasks],
                               "attempts": [dataclasses.asdict(a) for a in attempts]},
                              indent=2, default=str))
        return
    if as_json:
        d = dataclasses.asdict(rec)
        d["state"] = state
        d.pop("spec")
        from insitu.store import DataReadRecord

        reads = store.select(DataReadRecord, run_id=rec.id)
        click.echo(json.dumps({"run": d, "tasks": [dataclasses.asdict(t) for t in tasks],
                               "attempts": [dataclasses.asdict(a) for a in attempts],
                               "data_reads": [dataclasses.asdict(r) for r in reads]},
                              indent=2, default=str))
        return
    console.print(f"[bold]run {rec.id}[/]  pipeline {esc(rec.pipeline)}  ", state_text(state),
                  f"  backend {rec.backend}"
                  + (f"  server {esc(remote.server)} project {esc(rec.project)}"
                     if remote is not None else ""))
    if rec.params:
        console.print("params: " + esc(", ".join(f"{k}={v!r}" for k, v in rec.params.items())))
    t0 = rec.started_at or rec.created_at
    console.print(f"created {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(rec.created_at))}"
                  f", took {format_duration((rec.ended_at or time.time()) - t0)}")
    console.print(summary_table(rec, tasks, attempts))
    from insitu.cli._render import enforcement_line

    line = enforcement_line(attempts)
    if line:
        console.print(esc(line))
    if remote is not None:
        from insitu.cli._tracking import render_metrics

        logged = remote.get(remote.in_project("runs", rec.id, "metrics"))
        mt = render_metrics({(m["step"], m["name"]): [pt["value"] for pt in m["points"]]
                             for m in logged.get("metrics", [])},
                            {sp["step"]: sp["params"] for sp in logged.get("step_params", [])})
        if mt is not None:
            console.print(mt)
        if rec.state == S.RUN_FAILED:
            console.print(f"why: insitu explain {rec.id}")
        return
    from insitu.cli._tracking import data_summary, metrics_table

    data = data_summary(store, rec)
    if data is not None:
        console.print(data[0])
        console.print(data[1])
    mt = metrics_table(store, rec)
    if mt is not None:
        console.print(mt)
    from insitu.cli._train import checkpoints_table, ranks_table

    for table in (ranks_table(attempts), checkpoints_table(load_config().artifacts_url, rec.id)):
        if table is not None:
            console.print(table)
    if rec.state == S.RUN_FAILED:
        console.print(f"why: insitu explain {rec.id}")


@app.command()
@click.argument("run_id")
@click.argument("step", required=False)
@click.option("--attempt", type=click.IntRange(min=1), default=None,
              help="Attempt number, from 1 (default: the last).")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines until the run ends.")
@click.option("--rank", type=click.IntRange(min=0), default=None,
              help="A distributed step's rank (default: rank 0).")
def logs(run_id: str, step: str | None, attempt: int | None, follow: bool,
         rank: int | None) -> None:
    """Print the stdout and stderr of a run's steps (or of one STEP, e.g. 'evaluate[1]').

    A step that printed nothing, or never ran, is said so on stderr (exit 0); an unknown
    step or attempt is an error. A distributed step prints rank 0 unless --rank says.
    """
    from insitu.cli._render import log_tasks, report_silent, step_tasks
    from insitu.cli._train import check_rank
    from insitu.engine import shown_state
    from insitu.engine._paths import log_path
    from insitu.executor._gang import rank_path

    remote = remote_client()
    if remote is not None:
        if rank and (follow or step is None):
            raise UserError("--rank reads one rank of one distributed step, without --follow, "
                            "from a server", hint="insitu logs RUN STEP --rank N")
        from insitu.cli._remote import logs_remote

        logs_remote(remote, run_id, step, attempt, follow, rank or 0)
        return
    store = _store()
    cfg = load_config()
    rec = store.get_run(run_id)
    tasks = store.list_tasks(rec.id)
    tasks = log_tasks(tasks, rec.id, step, attempt)
    if attempt is not None and len(tasks) == 1 and attempt > tasks[0].attempts:
        t = tasks[0]
        raise NotFound(f"step {t.id} of run {rec.id} has {t.attempts} attempt(s), not "
                       f"{attempt}", hint=f"insitu logs {rec.id} {shlex.quote(t.id)}"
                       + (f" --attempt {t.attempts}" if t.attempts else ""))
    if rank:
        check_rank(store, tasks, rank, step)
    offsets: dict[Path, int] = {}
    printed: set[str] = set()

    def emit() -> None:
        for t in sorted(tasks, key=lambda t: t.seq):
            n = attempt or t.attempts
            if n == 0 or n > t.attempts:
                continue
            for stream in ("out", "err"):
                p = log_path(cfg, rec.id, t.id, n, stream)
                if rank:
                    p = Path(rank_path(str(p), rank))
                try:
                    with open(p, "rb") as f:
                        f.seek(offsets.get(p, 0))
                        data = f.read()
                        offsets[p] = f.tell()
                except (FileNotFoundError, IsADirectoryError):
                    continue
                who = f"{t.id}#{n}" + (f" rank {rank}" if rank else "")
                prefix = f"[{who}{' stderr' if stream == 'err' else ''}] "
                for line in data.decode(errors="replace").splitlines():
                    printed.add(t.id)
                    click.echo(prefix + line)

    emit()
    while follow and rec.state not in S.RUN_TERMINAL:
        time.sleep(0.5)
        rec = store.get_run(rec.id)
        tasks = store.list_tasks(rec.id)
        if step is not None:
            tasks = step_tasks(tasks, step)
        emit()
        if rec.state not in S.RUN_TERMINAL and shown_state(rec) == S.INTERRUPTED:
            err_console.print(f"run {esc(rec.id)} is no longer being run (its engine is gone); "
                              f"continue it with `insitu resume {esc(rec.id)}`")
            break
    report_silent(err_console, rec.id, tasks, printed, step, attempt)


@app.command()
@click.argument("run_id")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
def delete(run_id: str, yes: bool) -> None:
    """Delete a run with its records (refused while a registered model came from it)."""
    import shutil

    from insitu.engine import engine_alive

    remote = remote_client()
    if remote is not None:
        from insitu.cli._remote import delete_remote

        delete_remote(remote, run_id, yes)
        return
    store = _store()
    rec = store.get_run(run_id)
    if engine_alive(rec):
        raise UserError(f"run {rec.id} is still running", hint=f"insitu cancel {rec.id}")
    if not yes and sys.stdin.isatty():
        click.confirm(f"delete run {rec.id} ({rec.pipeline}, {rec.state})?", abort=True)
    store.delete_run(rec.id)
    shutil.rmtree(load_config().run_dir(rec.id), ignore_errors=True)
    from insitu.train import delete_checkpoints

    delete_checkpoints(load_config().artifacts_url, rec.id)
    console.print(f"deleted run {rec.id} (its outputs stay in the artifact store while "
                  "other runs or the cache use them)")


@app.command()
@click.argument("run_id")
@click.argument("step", required=False)
def explain(run_id: str, step: str | None) -> None:
    """Why a run (or one STEP, e.g. a map item 'evaluate[1]') failed, with the fix."""
    from insitu.cli._explain import explain as do_explain

    remote = remote_client()
    if remote is not None:
        from insitu.cli._explain import render_explain

        facts = remote.get(remote.in_project("runs", run_id, "explain"), step=step)
        for part in render_explain(facts):
            console.print(part)
        return
    store = _store()
    sys.exit(do_explain(store.get_run(run_id), store, load_config(), console, step))


@app.command()
@click.argument("run_id")
@click.argument("step", required=False)
def why(run_id: str, step: str | None) -> None:
    """Why a run's steps are waiting: inputs not ready, or what the scheduler says."""
    from insitu.cli._explain import why as do_why

    remote = remote_client()
    if remote is not None:
        from insitu.cli._explain import render_why

        for line in render_why(remote.get(remote.in_project("runs", run_id, "why"),
                                          step=step)):
            console.print(line)
        return
    store = _store()
    do_why(store.get_run(run_id), store, console, step)


@app.command(name="compile")
@click.argument("target")
@click.option("-p", "--param", "params", multiple=True, metavar="NAME=VALUE",
              help="A pipeline parameter (repeatable); the spec is compiled with it.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="Write the spec here (default: stdout).")
def compile_(target: str, params: tuple[str, ...], output: str | None) -> None:
    """Compile FILE[:PIPELINE] to a PipelineSpec (JSON), with the parameter values given
    (defaults for the others); a run of the spec uses exactly those values."""
    if output is not None:
        check_output(output, "-o")
    _check_target(target)
    spec = _spec_from(target, params)
    text = json.dumps(spec, indent=2)
    if output:
        write_bytes(output, (text + "\n").encode())
        console.print(f"wrote {esc(output)} (pipeline {esc(spec['name'])}, "
                      f"{len(spec['steps'])} steps)")
    else:
        click.echo(text)


@app.command()
@click.option("--plain", is_flag=True, help="Print progress as lines instead of a live table.")
def demo(plain: bool) -> None:
    """Run the demo: train and compare models on a dataset bundled with scikit-learn."""
    engine = _engine()  # the store first: a broken one is reported before the long imports
    from insitu.demo import pipeline as demo_pipeline

    spec = demo_pipeline.classification.compile()
    rec = engine.submit(spec, {})
    console.print(f"insitu demo: run [bold]{rec.id}[/] (state in {load_config().home})")
    code = _execute(engine, rec.id, plain)
    if code == 0:
        from insitu._results import get_run

        r = get_run(rec.id)
        report = r.output("report")
        tbl = Table(title="model variants (validation accuracy)", title_justify="left")
        tbl.add_column("variant")
        tbl.add_column("accuracy", justify="right")
        for name, score in sorted(report["scores"].items(), key=lambda kv: -kv[1]):
            tbl.add_row(name + (" (best)" if name == report["best"] else ""), f"{score:.4f}")
        console.print(tbl)
        console.print(f"best variant: [bold]{report['best']}[/]; tuned over "
                      f"{report['trials']} trials to validation accuracy "
                      f"{report['tuned_accuracy']:.4f} ({report['tuned_params']}); "
                      f"test accuracy {report['test_accuracy']:.4f}")
        console.print(f"model saved at {r.output('save_model')}")
        from insitu.models import register

        mv = register("demo-classifier", run=rec.id, step="final_model", alias="champion",
                      description=f"tuned {report['best']} from insitu demo",
                      store=engine.store)
        console.print(f"registered [bold]demo-classifier:{mv.version}[/] as @champion; "
                      f"load it with insitu.models.load('demo-classifier@champion')")
        console.print(f"study: insitu tune show {rec.id}/tune_best  |  "
                      "lineage: insitu models show demo-classifier")
        console.print(f"next: insitu show {rec.id}  |  python -c \"import insitu; "
                      f"print(insitu.get_run('{rec.id}').output('report'))\"")
    sys.exit(code)


def _say(message: str, hint: str | None) -> None:
    """One error on stderr: the message and the fix, printed literally (never as markup)."""
    from rich.text import Text

    err_console.print(Text.assemble(("error:", "bold red"), " ", message))
    if hint:
        err_console.print(Text.assemble(("fix:", "bold"), " ", hint))


def _os_error(e: OSError) -> tuple[str, str | None]:
    """An operating-system error (a file that cannot be read or written) as message and fix."""
    import errno

    what = f"{e.strerror or e}" + (f": {e.filename}" if e.filename is not None else "")
    fixes = {errno.ENOSPC: "free some space on that disk, or write somewhere else",
             errno.EDQUOT: "free some space on that disk, or write somewhere else",
             errno.ENOENT: "check the path (its folder must exist)",
             errno.ENOTDIR: "a part of that path is a file, not a folder: check the path",
             errno.EISDIR: "that path is a folder: give a file",
             errno.EACCES: "check the file's permissions",
             errno.EPERM: "check the file's permissions",
             errno.EROFS: "that file system is read-only: write somewhere else",
             errno.ENAMETOOLONG: "use a shorter name"}
    return f"cannot use that path ({what})", fixes.get(e.errno or 0)


def main() -> None:
    """Entry point: user errors become one clear message, never a traceback."""
    from insitu.errors import InsituError, StoreError

    try:
        app.main(standalone_mode=False)
    except click.exceptions.Abort:
        err_console.print("aborted")
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except (UserError, StoreError) as e:
        _say(e.message, e.hint)
        sys.exit(2)
    except InsituError as e:
        _say(str(e), None)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    except SystemExit:
        raise
    except ModuleNotFoundError as e:
        extra = _EXTRAS.get((e.name or "").partition(".")[0])
        if extra is None:
            _internal_error()
        _say(f"this command needs {e.name}, which is not installed here",
             f'pip install "insitu[{extra}]" (or pip install -e ".[{extra}]" in a clone)')
        sys.exit(2)
    except OSError as e:
        _say(*_os_error(e))
        sys.exit(1)
    except BaseException as e:
        from insitu.store._integrity import database_error

        db = database_error(e)
        if db is not None:
            _say(db.message, db.hint)
            sys.exit(2)
        _internal_error()
    sys.exit(0)


# packages of the optional extras (pyproject.toml) -> the extra that installs them
_EXTRAS = {"fastapi": "server", "psycopg": "server", "authlib": "server",
           "croniter": "server", "pynvml": "server"}


def _internal_error() -> NoReturn:
    import traceback

    traceback.print_exc()
    err_console.print("[bold red]internal error in insitu[/]: please report it with the "
                      "traceback above. Your finished work is kept; `insitu runs` lists it.")
    sys.exit(70)
