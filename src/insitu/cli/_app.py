"""The ``insitu`` command line."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from insitu._config import load_config
from insitu._units import format_duration
from insitu.errors import NotFound, UserError, not_found
from insitu.store import _records as S


def _console(stderr: bool = False) -> Console:
    c = Console(highlight=False, stderr=stderr)
    if not c.is_terminal and "COLUMNS" not in os.environ:
        c = Console(highlight=False, stderr=stderr, width=120)
    return c


console = _console()
err_console = _console(stderr=True)


def _store() -> Any:
    from insitu.store import open_store

    return open_store(load_config().db_url)


def _spec_from(target: str) -> dict[str, Any]:
    if target.endswith(".json"):
        from insitu.spec import load_spec

        return load_spec(target)
    from insitu.sdk import load_pipeline

    return load_pipeline(target).compile()


class _Group(click.Group):
    """A group whose heavier commands are imported only when used."""

    lazy = {"sim": ("insitu.scheduler._cli", "sim"),
            "metrics": ("insitu.cli._tracking", "metrics"),
            "compare": ("insitu.cli._tracking", "compare"),
            "models": ("insitu.cli._models", "models"),
            "tune": ("insitu.cli._tune", "tune"),
            "datasets": ("insitu.cli._datasets", "datasets"),
            "cluster": ("insitu.cli._cluster", "cluster"),
            "server": ("insitu.cli._server", "server")}

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
def app() -> None:
    """insitu: ML pipelines that run on a laptop in a minute and unchanged on a cluster.

    State lives under INSITU_HOME (default ~/.insitu).
    """


def _execute(engine: Any, run_id: str, no_live: bool = False) -> int:
    from insitu.cli._render import LiveProgress, summary_table

    store = engine.store
    live = LiveProgress(console)
    if no_live:
        live.plain = True
    engine.progress = live
    prev = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        with live:
            rec = engine.execute(run_id)
    finally:
        signal.signal(signal.SIGTERM, prev)
        engine.executor.close()
    tasks = store.list_tasks(rec.id)
    console.print(summary_table(rec, tasks, store.list_attempts(rec.id)))
    took = format_duration((rec.ended_at or time.time()) - (rec.started_at or rec.created_at))
    hits = sum(t.state == S.TASK_CACHED for t in tasks)
    style = {"succeeded": "bold green", "failed": "bold red"}.get(rec.state, "bold yellow")
    console.print(f"[{style}]run {rec.id} {rec.state}[/] in {took}"
                  + (f", {hits} cache hit{'s' if hits != 1 else ''}" if hits else ""))
    if rec.state == S.RUN_FAILED:
        console.print(f"why: [bold]insitu explain {rec.id}[/]   logs: insitu logs {rec.id}")
        return 1
    if rec.state == S.RUN_CANCELLED:
        console.print(f"continue it with: insitu resume {rec.id}")
        return 130
    return 0


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


@app.command()
@click.argument("target")
@click.option("-p", "--param", "params", multiple=True, metavar="NAME=VALUE",
              help="A pipeline parameter (repeatable).")
@click.option("--no-cache", is_flag=True, help="Run every step, ignoring cached outputs.")
@click.option("--backend", default="local", show_default=True,
              type=click.Choice(["local", "ray"]), help="Where steps run.")
@click.option("--address", default=None,
              help="The Ray cluster's address (default: RAY_ADDRESS, or `insitu cluster up`'s).")
@click.option("--plain", is_flag=True, help="Print progress as lines instead of a live table.")
def run(target: str, params: tuple[str, ...], no_cache: bool, backend: str,
        address: str | None, plain: bool) -> None:
    """Run a pipeline: TARGET is FILE[:PIPELINE], a module[:PIPELINE], or a compiled spec.json."""
    executor = _executor(backend, address)  # a local one starts its server while we compile
    try:
        from insitu.engine import Engine, parse_cli_params

        spec = _spec_from(target)
        engine = Engine(_store(), executor, config=load_config())
    except BaseException:
        executor.close()
        raise
    rec = engine.submit(spec, parse_cli_params(list(params)), no_cache=no_cache,
                        from_text=True)
    console.print(f"run [bold]{rec.id}[/] of pipeline {rec.pipeline}")
    sys.exit(_execute(engine, rec.id, plain))


@app.command()
@click.argument("run_id")
@click.option("--address", default=None, help="The Ray cluster's address, for a Ray run.")
@click.option("--plain", is_flag=True, help="Print progress as lines instead of a live table.")
def resume(run_id: str, address: str | None, plain: bool) -> None:
    """Continue a run: only what did not finish runs; finished outputs are reused."""
    from insitu.engine import engine_alive

    rec = _store().get_run(run_id)
    if rec.state == S.RUN_SUCCEEDED:
        console.print(f"run {rec.id} already succeeded; nothing to resume.")
        return
    if engine_alive(rec):
        raise UserError(f"run {rec.id} is still being run by process {rec.engine_pid} on "
                        f"{rec.engine_host}", hint=f"wait for it, or `insitu cancel {rec.id}`")
    engine = _engine(rec.backend, address)
    console.print(f"resuming run [bold]{rec.id}[/] of pipeline {rec.pipeline}")
    sys.exit(_execute(engine, rec.id, plain))


@app.command()
@click.argument("run_id")
def cancel(run_id: str) -> None:
    """Stop a run's attempts and mark it cancelled."""
    import dataclasses

    from insitu.engine import engine_alive

    store = _store()
    rec = store.get_run(run_id)
    if rec.state in S.RUN_TERMINAL:
        console.print(f"run {rec.id} is already {rec.state}.")
        return
    if not engine_alive(rec):  # nobody drives it: mark it ourselves
        now = time.time()
        recs: list[Any] = [dataclasses.replace(rec, state=S.RUN_CANCELLED, ended_at=now)]
        for a in store.list_attempts(rec.id):
            if a.state == S.ATT_RUNNING:
                recs.append(dataclasses.replace(a, state=S.ATT_CANCELLED, ended_at=now))
        for t in store.list_tasks(rec.id):
            if t.state in (S.TASK_PENDING, S.TASK_RUNNING):
                recs.append(dataclasses.replace(t, state=S.TASK_CANCELLED, ended_at=now))
        store.put(*recs)
        console.print(f"run {rec.id} cancelled (no engine was running it).")
        return
    deadline = time.time() + 60
    while time.time() < deadline:
        cur = store.get_run(rec.id)
        if cur.state in S.RUN_TERMINAL:
            console.print(f"run {rec.id} {cur.state}.")
            return
        if not cur.cancel_requested:
            store.put(dataclasses.replace(cur, cancel_requested=True))
        time.sleep(0.3)
    raise UserError(f"run {rec.id} did not stop within 60s",
                    hint=f"its engine is process {rec.engine_pid}; stop it with kill")


@app.command()
@click.option("--pipeline", default=None, help="Only runs of this pipeline.")
@click.option("--status", "state", default=None,
              type=click.Choice(["pending", "running", "succeeded", "failed", "cancelled"]),
              help="Only runs in this state.")
@click.option("-n", "--limit", default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def runs(pipeline: str | None, state: str | None, limit: int, as_json: bool) -> None:
    """List runs, newest first."""
    from insitu.engine import engine_alive

    recs = _store().list_runs(pipeline=pipeline, state=state, limit=limit)
    if as_json:
        click.echo(json.dumps([{
            "id": r.id, "pipeline": r.pipeline, "state": r.state, "params": r.params,
            "created_at": r.created_at, "started_at": r.started_at, "ended_at": r.ended_at,
        } for r in recs], indent=2))
        return
    tbl = Table()
    for col in ("run", "pipeline", "state", "created", "duration", "params"):
        tbl.add_column(col)
    from insitu.cli._render import state_text

    for r in recs:
        st = r.state
        if st == S.RUN_RUNNING and not engine_alive(r):
            st = "interrupted"
        dur = format_duration((r.ended_at or time.time()) - r.started_at) if r.started_at \
            else "-"
        tbl.add_row(r.id, r.pipeline, state_text(st),
                    time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.created_at)), dur,
                    ", ".join(f"{k}={v}" for k, v in r.params.items())[:60])
    console.print(tbl)
    if not recs:
        console.print("no runs yet: try `insitu demo`")


@app.command()
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def show(run_id: str, as_json: bool) -> None:
    """A run's steps: states, durations, attempts, cache hits, resources asked vs used."""
    import dataclasses

    from insitu.cli._render import state_text, summary_table

    store = _store()
    rec = store.get_run(run_id)
    tasks = store.list_tasks(rec.id)
    attempts = store.list_attempts(rec.id)
    if as_json:
        d = dataclasses.asdict(rec)
        d.pop("spec")
        from insitu.store import DataReadRecord

        reads = store.select(DataReadRecord, run_id=rec.id)
        click.echo(json.dumps({"run": d, "tasks": [dataclasses.asdict(t) for t in tasks],
                               "attempts": [dataclasses.asdict(a) for a in attempts],
                               "data_reads": [dataclasses.asdict(r) for r in reads]},
                              indent=2, default=str))
        return
    console.print(f"[bold]run {rec.id}[/]  pipeline {rec.pipeline}  ", state_text(rec.state),
                  f"  backend {rec.backend}")
    if rec.params:
        console.print("params: " + ", ".join(f"{k}={v!r}" for k, v in rec.params.items()))
    t0 = rec.started_at or rec.created_at
    console.print(f"created {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(rec.created_at))}"
                  f", took {format_duration((rec.ended_at or time.time()) - t0)}")
    console.print(summary_table(rec, tasks, attempts))
    from insitu.cli._tracking import data_summary, metrics_table

    data = data_summary(store, rec)
    if data is not None:
        console.print(data[0])
        console.print(data[1])
    mt = metrics_table(store, rec)
    if mt is not None:
        console.print(mt)
    if rec.state == S.RUN_FAILED:
        console.print(f"why: insitu explain {rec.id}")


@app.command()
@click.argument("run_id")
@click.argument("step", required=False)
@click.option("--attempt", type=int, default=None, help="Attempt number (default: the last).")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines until the run ends.")
def logs(run_id: str, step: str | None, attempt: int | None, follow: bool) -> None:
    """Print the stdout and stderr of a run's steps (or of one STEP)."""
    from insitu.engine._paths import log_path

    store = _store()
    cfg = load_config()
    rec = store.get_run(run_id)
    tasks = store.list_tasks(rec.id)
    ids = [t.id for t in tasks]
    if step is not None:
        chosen = [t for t in tasks if t.id == step or (t.step_id == step and t.map_index
                                                       is not None)]
        if not chosen:
            raise not_found("step", step, ids, where=f"run {rec.id}")
        tasks = chosen
    offsets: dict[Path, int] = {}

    def emit() -> None:
        for t in sorted(tasks, key=lambda t: t.seq):
            n = attempt or t.attempts
            if n == 0:
                continue
            if attempt is not None and attempt > t.attempts:
                raise NotFound(f"step {t.id} has {t.attempts} attempt(s), not {attempt}")
            for stream in ("out", "err"):
                p = log_path(cfg, rec.id, t.id, n, stream)
                try:
                    with open(p, "rb") as f:
                        f.seek(offsets.get(p, 0))
                        data = f.read()
                        offsets[p] = f.tell()
                except FileNotFoundError:
                    continue
                prefix = f"[{t.id}#{n}{' stderr' if stream == 'err' else ''}] "
                for line in data.decode(errors="replace").splitlines():
                    click.echo(prefix + line)

    emit()
    while follow:
        time.sleep(0.5)
        rec = store.get_run(rec.id)
        tasks = [t for t in store.list_tasks(rec.id) if step is None or t.id == step
                 or t.step_id == step and t.map_index is not None]
        emit()
        if rec.state in S.RUN_TERMINAL:
            break


@app.command()
@click.argument("run_id")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
def delete(run_id: str, yes: bool) -> None:
    """Delete a run with its records (refused while a registered model came from it)."""
    import shutil

    from insitu.engine import engine_alive

    store = _store()
    rec = store.get_run(run_id)
    if engine_alive(rec):
        raise UserError(f"run {rec.id} is still running", hint=f"insitu cancel {rec.id}")
    if not yes and sys.stdin.isatty():
        click.confirm(f"delete run {rec.id} ({rec.pipeline}, {rec.state})?", abort=True)
    store.delete_run(rec.id)
    shutil.rmtree(load_config().run_dir(rec.id), ignore_errors=True)
    console.print(f"deleted run {rec.id} (its outputs stay in the artifact store while "
                  "other runs or the cache use them)")


@app.command()
@click.argument("run_id")
def explain(run_id: str) -> None:
    """Why a run failed, on one screen, with the fix."""
    from insitu.cli._explain import explain as do_explain

    store = _store()
    sys.exit(do_explain(store.get_run(run_id), store, load_config(), console))


@app.command()
@click.argument("run_id")
@click.argument("step", required=False)
def why(run_id: str, step: str | None) -> None:
    """Why a run's steps are waiting: inputs not ready, or what the scheduler says."""
    from insitu.engine._refs import condition_steps, upstream_steps

    store = _store()
    rec = store.get_run(run_id)
    tasks = store.list_tasks(rec.id)
    by_id = {t.id: t for t in tasks}
    steps = {s["id"]: s for s in rec.spec["steps"]}
    if step is not None and step not in steps:
        raise not_found("step", step, steps, where=f"run {rec.id}")
    shown = 0
    for sid in [step] if step else list(steps):
        t = by_id[sid]
        items = [x for x in tasks if x.step_id == sid and x.map_index is not None]
        waiting = [x for x in (items or [t]) if x.state == S.TASK_PENDING]
        if not waiting and step is None:
            continue
        shown += 1
        if not waiting:
            console.print(f"[bold]{sid}[/]: {t.state}, not waiting")
            continue
        reasons = sorted({x.pending_reason for x in waiting if x.pending_reason})
        if reasons:
            head = f"{len(waiting)} of {len(items)} items" if items else "it"
            console.print(f"[bold]{sid}[/]: {head} cannot be placed now: {reasons[0]}")
            for more in reasons[1:3]:
                console.print(f"    also: {more}")
            continue
        s = steps[sid]
        deps = set().union(*(upstream_steps(r) for r in s["args"].values())) \
            if s["args"] else set()
        if s.get("map"):
            deps |= upstream_steps(s["map"]["over"])
        deps |= condition_steps(s.get("when"))
        open_deps = sorted(d for d in deps if by_id[d].state not in S.TASK_DONE)
        if open_deps:
            console.print(f"[bold]{sid}[/]: waiting for its inputs from "
                          + ", ".join(f"{d} ({by_id[d].state})" for d in open_deps))
        elif s.get("exit_handler"):
            console.print(f"[bold]{sid}[/]: the exit handler runs after every other step")
        elif rec.state in S.RUN_TERMINAL:
            console.print(f"[bold]{sid}[/]: not run: the run is {rec.state} "
                          f"(`insitu resume {rec.id}` runs it)")
        else:
            console.print(f"[bold]{sid}[/]: ready, about to be placed")
    if shown == 0:
        console.print(f"run {rec.id} is {rec.state}: no step is waiting.")


@app.command(name="compile")
@click.argument("target")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="Write the spec here (default: stdout).")
def compile_(target: str, output: str | None) -> None:
    """Compile FILE[:PIPELINE] to a PipelineSpec (JSON)."""
    spec = _spec_from(target)
    text = json.dumps(spec, indent=2)
    if output:
        Path(output).write_text(text + "\n")
        console.print(f"wrote {output} (pipeline {spec['name']}, {len(spec['steps'])} steps)")
    else:
        click.echo(text)


@app.command()
@click.option("--plain", is_flag=True, help="Print progress as lines instead of a live table.")
def demo(plain: bool) -> None:
    """Run the demo: train and compare models on a dataset bundled with scikit-learn."""
    from insitu.demo import pipeline as demo_pipeline

    engine = _engine()
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
        err_console.print(f"[bold red]error:[/] {e.message}")
        if e.hint:
            err_console.print(f"[bold]fix:[/] {e.hint}")
        sys.exit(2)
    except InsituError as e:
        err_console.print(f"[bold red]error:[/] {e}")
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    except SystemExit:
        raise
    except BaseException:
        import traceback

        traceback.print_exc()
        err_console.print("[bold red]internal error in insitu[/]: please report it with the "
                          "traceback above. Your finished work is kept; `insitu runs` lists it.")
        sys.exit(70)
    sys.exit(0)


