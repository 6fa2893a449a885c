"""``insitu tune``: run a tuning study from the command line, and show one.

With a server configured (``insitu login``, or INSITU_SERVER), ``show`` reads the study from
it and prints the same tables from the API's JSON; ``run`` runs on this machine only, so it
is refused there with how to run it locally."""

from __future__ import annotations

import collections
import json
import re
import sys
from typing import Any

import click
from rich.table import Table

from insitu.cli._app import _execute, _store, console
from insitu.errors import NotFound, UserError
from insitu.tune._api import MAX_PARALLEL, MAX_SEED, MAX_TRIALS

_CALL = re.compile(r"^\s*(uniform|loguniform|int|integer|choice)\s*\((.*)\)\s*$")


def parse_space(text: str) -> dict[str, Any]:
    """JSON: ``{"lr": "loguniform(1e-4, 0.1)", "depth": "int(2, 8)", "k": ["a", "b"]}``
    (or the full form ``{"type": "float", "low": ..., "high": ..., "log": true}``)."""
    from insitu.tune import _space

    try:
        raw = json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"--space is not JSON: {e.msg}",
                        hint='write e.g. --space \'{"lr": "loguniform(1e-4, 0.1)", '
                             '"depth": "int(2, 8)"}\'') from None
    if not isinstance(raw, dict):
        raise UserError("--space must be a JSON object of parameter -> distribution")
    out: dict[str, Any] = {}
    arity = {"uniform": 2, "loguniform": 2, "integer": 2}
    for name, d in raw.items():
        if isinstance(d, str):
            m = _CALL.match(d)
            if not m:
                raise UserError(f"--space {name}: cannot read {d!r}",
                                hint="use uniform(a, b), loguniform(a, b), int(a, b) or a list")
            fn, args = m.group(1), m.group(2)
            try:
                vals = json.loads(f"[{args}]")
            except json.JSONDecodeError:
                raise UserError(f"--space {name}: bad arguments in {d!r}",
                                hint="write numbers, e.g. \"uniform(0.1, 0.9)\"") from None
            fn = {"int": "integer"}.get(fn, fn)
            if fn in arity and len(vals) != arity[fn]:
                raise UserError(f"--space {name}: {m.group(1)}() takes 2 numbers (low, high), "
                                f"got {len(vals)} in {d!r}",
                                hint=f"write e.g. \"{m.group(1)}(1, 10)\"")
            try:
                out[name] = getattr(_space, fn)(vals) if fn == "choice" else \
                    getattr(_space, fn)(*vals)
            except UserError as e:
                raise UserError(f"--space {name}: {d!r}: {e.message.split(': ', 1)[-1]}",
                                hint=f"write numbers, e.g. \"{m.group(1)}(1, 10)\"") from None
        else:
            out[name] = d
    return out


def _finite(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    import math

    if value is not None and not (math.isfinite(value) and value > 0):
        raise click.BadParameter(f"must be a positive number of seconds, got {value}")
    return value


@click.group()
def tune() -> None:
    """Tune a step's hyperparameters (each trial is a step), and show studies."""


@tune.command("run")
@click.argument("target")
@click.option("--space", required=True, help='e.g. \'{"lr": "loguniform(1e-4, 0.1)"}\'')
@click.option("--metric", required=True, help="The value to optimise.")
@click.option("--goal", default="maximize", type=click.Choice(["maximize", "minimize"]),
              show_default=True)
@click.option("--algorithm", default="tpe", show_default=True,
              type=click.Choice(["tpe", "gp", "cmaes", "random", "grid", "qmc"]))
@click.option("--trials", "max_trials", default=20, show_default=True,
              type=click.IntRange(1, MAX_TRIALS))
@click.option("--parallel", default=1, show_default=True, type=click.IntRange(1, MAX_PARALLEL))
@click.option("--max-failed", default=None, type=click.IntRange(1, MAX_TRIALS))
@click.option("--early-stopping", default=None, type=click.Choice(["median", "hyperband"]))
@click.option("--startup-trials", default=None, type=click.IntRange(0, MAX_TRIALS),
              help="Median pruner: trials that finish before any is pruned (default 3).")
@click.option("--warmup-steps", default=None, type=click.IntRange(0, MAX_TRIALS),
              help="Median pruner: reports of a trial before it may be pruned (default 1).")
@click.option("--timeout", default=None, type=float, callback=_finite,
              help="Seconds before no new trial starts.")
@click.option("--seed", default=None, type=click.IntRange(0, MAX_SEED))
@click.option("-p", "--param", "params", multiple=True, metavar="NAME=VALUE",
              help="A fixed argument of the step (JSON or text; repeatable).")
@click.option("--plain", is_flag=True, help="Print progress as lines.")
def run_cmd(target: str, space: str, metric: str, goal: str, algorithm: str, max_trials: int,
            parallel: int, max_failed: int | None, early_stopping: str | None,
            startup_trials: int | None, warmup_steps: int | None,
            timeout: float | None, seed: int | None, params: tuple[str, ...],
            plain: bool) -> None:
    """Tune the step TARGET (FILE:STEP_FUNCTION) over --space."""
    import insitu
    from insitu.cli._common import local_only
    from insitu.engine import parse_cli_params
    from insitu.sdk import Pipeline, Step
    from insitu.sdk._loader import import_target

    local_only("tune run")
    file, _, name = target.rpartition(":")
    if not file or not name:
        raise UserError(f"cannot read {target!r}", hint="write FILE:STEP, e.g. train.py:fit")
    mod = import_target(file)
    step = getattr(mod, name, None)
    if not isinstance(step, Step):
        steps = sorted(k for k, v in vars(mod).items() if isinstance(v, Step))
        raise NotFound(f"{file} has no step named {name!r}",
                       hint=f"steps in it: {', '.join(steps) or 'none'}")
    fixed: dict[str, Any] = {}
    for k, v in parse_cli_params(list(params)).items():
        try:
            fixed[k] = json.loads(v)
        except json.JSONDecodeError:
            fixed[k] = v
    sp = parse_space(space)

    def body() -> None:
        insitu.tune(step, space=sp, metric=metric, goal=goal, algorithm=algorithm,
                    max_trials=max_trials, parallel=parallel, max_failed=max_failed,
                    early_stopping=early_stopping, timeout=timeout, seed=seed,
                    startup_trials=startup_trials, warmup_steps=warmup_steps, **fixed)

    body.__qualname__ = body.__name__ = f"tune_{name}"
    spec = Pipeline(body, name=f"tune-{name}").compile()
    from insitu.cli._app import _engine

    engine = _engine()
    rec = engine.submit(spec, {})
    console.print(f"tuning {name}: run [bold]{rec.id}[/], study {rec.id}/{step.name}")
    code = _execute(engine, rec.id, plain)
    if code == 0:
        _show(f"{rec.id}/{step.name}")
    sys.exit(code)


def _resolve_study(ref: str) -> tuple[Any, str]:
    store = _store()
    run_ref, _, step = ref.partition("/")
    run = store.get_run(run_ref)
    tuned = [s["id"] for s in run.spec["steps"] if s.get("tune")]
    return run, _pick_step(run.id, step, tuned)


def _pick_step(run_id: str, step: str, tuned: list[str]) -> str:
    if not tuned:
        raise NotFound(f"run {run_id} has no tuning step",
                       hint="studies are named RUN/STEP after a run with insitu.tune")
    if step:
        if step not in tuned:
            raise NotFound(f"run {run_id} has no tuning step {step!r}",
                           hint=f"its tuning steps: {', '.join(tuned)}")
        return step
    if len(tuned) > 1:
        raise UserError(f"run {run_id} has several tuning steps ({', '.join(tuned)})",
                        hint=f"insitu tune show {run_id}/{tuned[0]}")
    return tuned[0]


def _fmt(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in params.items())


def _local_study(name: str) -> dict[str, Any]:
    """The study as the API's ``GET .../runs/{run}/studies/{step}`` answers it, from this
    machine's store."""
    from insitu.store import TrialRecord

    run, step = _resolve_study(name)
    store = _store()
    cfg = next(s["tune"] for s in run.spec["steps"] if s["id"] == step)
    records = store.select(TrialRecord, run_id=run.id, step_id=step)
    tasks = {t.id: t for t in store.list_tasks(run.id)}
    counts = collections.Counter(r.state for r in records)
    trials = []
    for r in records:
        t = tasks.get(r.task_id)
        trials.append({"number": r.number, "state": r.state, "value": r.value,
                       "params": r.params, "intermediate": r.intermediate,
                       "duration": t.ended_at - t.started_at
                       if t and t.ended_at and t.started_at else None,
                       "pruned_at": max(int(k) for k in r.intermediate)
                       if r.state == "pruned" and r.intermediate else None})
    return {"study": f"{run.id}/{step}", "goal": cfg["goal"], "metric": cfg["metric"],
            "algorithm": cfg["algorithm"], "space": cfg["space"], "trial_count": len(records),
            "ended": sum(n for k, n in counts.items() if k != "running"),  # pruned count
            "counts": dict(sorted(counts.items())), "trials": trials}


def _remote_study(client: Any, name: str) -> dict[str, Any]:
    """The study from the server: RUN/STEP, or RUN when it has one tuning step."""
    from insitu.client._runs import get_view

    run_ref, _, step = name.partition("/")
    run_id = str(get_view(client, run_ref)["id"])
    if not step:
        tuned = [x["step"] for x in client.get(client.in_project("studies"))
                 if x["run_id"] == run_id]
        step = _pick_step(run_id, step, tuned)
    study: dict[str, Any] = client.get(client.in_project("runs", run_id, "studies", step))
    return study


def _show(name: str) -> None:
    from insitu.cli._common import remote_client

    client = remote_client()
    print_study(_remote_study(client, name) if client is not None else _local_study(name))


def print_study(study: dict[str, Any]) -> None:
    """``insitu tune show``: the head line, best trial, trials table and parameter importance
    of a study as the API answers it."""
    from types import SimpleNamespace

    from insitu.tune._space import distributions
    from insitu.tune._study import add_finished, new_study

    trials = study["trials"]
    console.print(f"[bold]study {study['study']}[/]  {study['goal']} {study['metric']}, "
                  f"{study['algorithm']}  {study['ended']}/{study['trial_count']} trials "
                  "ended: " + ", ".join(f"{n} {k}" for k, n in study["counts"].items()))
    done = [r for r in trials if r["state"] == "complete"]
    if done:
        pick = max if study["goal"] == "maximize" else min
        b = pick(done, key=lambda r: (r["value"], -r["number"]))
        console.print(f"best trial {b['number']}: value {b['value']:.6g}  "
                      f"params {_fmt(b['params'])}")
    tbl = Table(title="trials", title_justify="left")
    for col in ("trial", "state", "value", "params", "duration"):
        tbl.add_column(col, justify="right" if col in ("trial", "value") else "left")
    for r in trials:
        state = r["state"]
        if r.get("pruned_at") is not None:  # where the pruner stopped it
            state = f"pruned at step {r['pruned_at']}"
        dur = r.get("duration")
        tbl.add_row(str(r["number"]), state,
                    "-" if r["value"] is None else f"{r['value']:.6g}",
                    _fmt(r["params"]), "-" if dur is None else f"{dur:.2f}s")
    console.print(tbl)
    if len(done) >= 2:
        try:
            import optuna

            cfg = {k: study[k] for k in ("goal", "metric", "algorithm", "space")}
            opt = new_study(cfg)
            add_finished(opt, [SimpleNamespace(**r) for r in trials],
                         distributions(cfg["space"]))
            imp = optuna.importance.get_param_importances(opt)
        except Exception as e:  # noqa: BLE001 - importance is a bonus, never a failure
            console.print(f"(parameter importance unavailable: {e})")
            return
        it = Table(title="parameter importance", title_justify="left")
        it.add_column("parameter")
        it.add_column("importance", justify="right")
        for k, v in imp.items():
            it.add_row(k, f"{v:.3f}")
        console.print(it)


@tune.command("show")
@click.argument("study")
def show_cmd(study: str) -> None:
    """Best trial, trials table and parameter importance of STUDY (RUN or RUN/STEP)."""
    _show(study)
