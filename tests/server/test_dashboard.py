"""The dashboard in a real browser (Debian's Chromium driven by Playwright) against a real
``insitu server`` on loopback, with runs made by running real pipelines on the server's
database: login, the runs list and its filters, a run's graph and failure panel, logs that
stream while a step runs, what a viewer and another project's owner see, and ``insitu ui``
over a local store. One browser for the module; each test its own browser context (its own
cookies). Screenshots of each page go to the module's ``dashboard-shots`` folder (or to
``INSITU_UI_SHOTS``)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import sync_playwright
from remote import stop

from conftest import Server, _free_port
from insitu.datasets import add as add_dataset
from insitu.models import register
from insitu.store import open_store
from pg_fixture import databases

SERVER_DBS = databases("sqlite")  # INSITU_TEST_ALL_DBS=1: both
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
CASES = str(Path(__file__).parents[1] / "pipelines" / "ui_cases.py")
P = "/api/v1/projects/default"
WAIT = 60_000  # ms: generous, this machine is shared


def insitu(s: Server, *args: str, home: Path | None = None, **popen: Any
           ) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "INSITU_HOME": str(home or s.home), "INSITU_DB_URL": s.db_url,
           "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "insitu", *args], capture_output=True,
                          text=True, timeout=600, env=env, **popen)


def _newest(s: Server, pipeline: str) -> str:
    items = s.admin.get(f"{P}/runs", params={"pipeline": pipeline}).json()["items"]
    return str(items[0]["id"])


@dataclass
class World:
    s: Server
    shots: Path
    train: str          # train, lr 0.25
    train2: str         # train, lr 0.5 (shards and scores from the cache)
    broken: str         # fails: a file that is not there
    search: str         # a tuning study of 4 trials
    model: str
    dataset: str
    flaky: str          # its step failed once and was retried
    reads: str          # read the dataset's shards
    scheduled: str      # made by schedule "nightly"
    served: str         # a model a server can serve (v1 and v2)
    tokens: dict[str, str] = field(default_factory=dict)


@pytest.fixture(scope="module")
def world(server: Server, tmp_path_factory: pytest.TempPathFactory) -> World:
    s = server
    assert insitu(s, "run", f"{CASES}:train", "--plain").returncode == 0
    train = _newest(s, "train")
    r = insitu(s, "run", f"{CASES}:train", "-p", "lr=0.5", "--plain")
    assert r.returncode == 0, r.stdout + r.stderr
    train2 = _newest(s, "train")
    assert insitu(s, "run", f"{CASES}:broken", "--plain").returncode == 1
    broken = _newest(s, "broken")
    r = insitu(s, "run", f"{CASES}:search", "--plain")
    assert r.returncode == 0, r.stdout + r.stderr
    search = _newest(s, "search")
    model = f"m-{uuid.uuid4().hex[:6]}"
    data = tmp_path_factory.mktemp("shards")
    for i in range(3):
        (data / f"part-{i}.csv").write_text(f"x\n{i}\n")
    dataset = f"d-{uuid.uuid4().hex[:6]}"
    store = open_store(s.db_url)  # what `insitu models register` and `datasets add` do
    try:
        register(model, run=train, step="fit", alias="champion", store=store)
        register(model, run=train2, step="fit", store=store)  # v2
        add_dataset(dataset, [str(data / "*.csv")], store=store)
    finally:
        store.close()
    marker = tmp_path_factory.mktemp("flaky") / "marker"
    r = insitu(s, "run", f"{CASES}:flaky", "-p", f"marker={marker}", "--plain")
    assert r.returncode == 0, r.stdout + r.stderr
    flaky = _newest(s, "flaky")
    r = insitu(s, "run", f"{CASES}:reads", "-p", f"name={dataset}", "--plain")
    assert r.returncode == 0, r.stdout + r.stderr
    reads = _newest(s, "reads")
    r = insitu(s, "run", f"{CASES}:servable", "--plain")
    assert r.returncode == 0, r.stdout + r.stderr
    served = f"s-{uuid.uuid4().hex[:6]}"
    store = open_store(s.db_url)
    try:
        for _ in range(2):
            register(served, run=_newest(s, "servable"), step="tiny_model", store=store)
    finally:
        store.close()
    a = s.admin
    scheduled = _scheduled_run(s)
    for name in ("vera", "otto"):
        assert a.post("/api/v1/users", json={"name": name}).status_code == 201
    assert a.put(f"{P}/members/vera", json={"role": "viewer"}).status_code == 200
    assert a.post("/api/v1/projects", json={"name": "elsewhere", "owner": "otto"}
                  ).status_code == 201
    tokens = {"admin": s.admin_token}
    for name in ("vera", "otto"):
        r = a.post("/api/v1/tokens", json={"name": "ui", "user": name})
        tokens[name] = r.json()["token"]
    where = os.environ.get("INSITU_UI_SHOTS")  # keep them somewhere to look at
    shots = Path(where) if where else tmp_path_factory.mktemp("dashboard-shots")
    shots.mkdir(parents=True, exist_ok=True)
    print(f"dashboard screenshots: {shots}")
    return World(s, shots, train, train2, broken, search, model, dataset, flaky, reads,
                 scheduled, served, tokens)


def _scheduled_run(s: Server) -> str:
    """Schedule "nightly" (paused) with one backfilled tick: its run, once it has ended."""
    from insitu.sdk import compile_pipeline, load_pipeline

    spec = dict(compile_pipeline(load_pipeline(f"{CASES}:stamp"), {}))
    r = s.admin.post(f"{P}/schedules", json={"name": "nightly", "spec": spec,
                                              "cron": "0 3 * * *", "paused": True})
    assert r.status_code == 201, r.text
    r = s.admin.post(f"{P}/schedules/nightly/backfill",
                     json={"from": "2026-03-01", "to": "2026-03-01T23:59"})
    assert r.status_code == 200, r.text
    items = s.admin.get(f"{P}/runs", params={"schedule": "nightly"}).json()["items"]
    assert len(items) == 1 and items[0]["labels"]["schedule"] == "nightly"
    deadline = time.monotonic() + 120  # ended, so no other test sees it running
    while s.admin.get(f"{P}/runs/{items[0]['id']}").json()["state"] != "succeeded":
        assert time.monotonic() < deadline, "the scheduled run did not succeed in 120 s"
        time.sleep(0.1)
    return str(items[0]["id"])


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/test-deps (installs Debian's chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            b.close()


class Page:
    """A browser context with its own cookies, and what went wrong in it: console errors,
    uncaught exceptions, failed requests and answers of 400 or more."""

    def __init__(self, browser: Any, url: str) -> None:
        self.ctx = browser.new_context(viewport={"width": 1280, "height": 900},
                                       base_url=url)
        self.page = self.ctx.new_page()
        self.problems: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.problems.append(
            f"console: {m.text}"))
        self.page.on("pageerror", lambda e: self.problems.append(f"exception: {e}"))
        # a request the page's own navigation (or a closed stream) cut short is no failure
        self.page.on("requestfailed", lambda r: self.problems.append(
            f"failed: {r.url} {r.failure}") if "ERR_ABORTED" not in (r.failure or "")
            else None)
        self.page.on("response", lambda r: r.status >= 400 and self.problems.append(
            f"{r.status}: {r.url}"))

    def login(self, token: str, then: str = "/runs") -> None:
        self.page.goto(then)
        self.page.wait_for_url("**/login?next=*", timeout=WAIT)
        self.problems.clear()  # the 401 that sent it to the login page
        self.page.fill("input[name=token]", token)
        self.page.click("button[type=submit]")
        self.page.wait_for_url(f"**{then}*", timeout=WAIT)

    def shot(self, w: World, name: str) -> None:
        self.page.wait_for_load_state("networkidle")
        self.page.screenshot(path=str(w.shots / f"{name}.png"), full_page=True)

    def close(self) -> None:
        self.ctx.close()


@pytest.fixture
def ui(world: World, browser: Any) -> Iterator[Page]:
    p = Page(browser, world.s.url)
    try:
        yield p
    finally:
        p.close()


def _rows(pg: Any) -> list[str]:
    return [str(x) for x in pg.eval_on_selector_all("#runs tbody tr[data-run]",
                                                     "rs => rs.map(r => r.dataset.run)")]


def test_login_and_the_runs_list_with_filters(world: World, ui: Page) -> None:
    pg = ui.page
    ui.login(world.tokens["admin"])
    pg.wait_for_selector(f"#runs tr[data-run='{world.broken}']", timeout=WAIT)
    assert set(_rows(pg)) >= {world.train, world.train2, world.broken}
    assert pg.locator(f"tr[data-run='{world.broken}'] .badge").inner_text() == "failed"
    ui.shot(world, "runs")
    pg.select_option("select[name=state]", "failed")
    pg.click("form.filters button[type=submit]")
    pg.wait_for_url("**state=failed*", timeout=WAIT)
    pg.wait_for_function("() => document.querySelectorAll('#runs tr[data-run]').length === 1",
                         timeout=WAIT)
    assert _rows(pg) == [world.broken]
    pg.goto("/runs?project=default")  # the runs a schedule made
    pg.select_option("select[name=schedule]", "nightly")
    pg.click("form.filters button[type=submit]")
    pg.wait_for_url("**schedule=nightly*", timeout=WAIT)
    pg.wait_for_function("() => document.querySelectorAll('#runs tr[data-run]').length === 1",
                         timeout=WAIT)
    assert _rows(pg) == [world.scheduled]
    assert "schedule=nightly" in pg.locator(f"tr[data-run='{world.scheduled}']").inner_text()
    pg.goto("/runs?project=default&pipeline=train")  # a shareable URL: the filter is in it
    pg.wait_for_selector(f"#runs tr[data-run='{world.train}']", timeout=WAIT)
    assert _rows(pg) == [world.train2, world.train]  # newest first
    pg.fill("input[name=search]", world.train)  # a run id: its page
    pg.press("input[name=search]", "Enter")
    pg.wait_for_url(f"**/projects/default/runs/{world.train}", timeout=WAIT)
    pg.wait_for_selector("#graph .node[data-step=fit]", timeout=WAIT)
    assert ui.problems == []


def test_pagination_goes_by_the_apis_cursor(world: World, ui: Page) -> None:
    pg = ui.page
    ui.login(world.tokens["admin"])
    pg.goto("/runs?project=default")
    pg.wait_for_selector("#runs tr[data-run]", timeout=WAIT)
    first = _rows(pg)
    # pages of 50 are the dashboard's; a page of one is asked of the API the same way
    page1 = world.s.admin.get(f"{P}/runs", params={"limit": 1}).json()
    assert page1["items"][0]["id"] == first[0]
    assert page1["next_cursor"]
    pg.goto(f"/runs?project=default&cursor={page1['next_cursor']}")
    pg.wait_for_selector("#runs tr[data-run]", timeout=WAIT)
    assert _rows(pg) == first[1:]
    assert pg.locator("text=First page").count() == 1
    assert ui.problems == []


def test_a_run_page_shows_the_graph_and_the_failures_cause_and_fix(world: World,
                                                                   ui: Page) -> None:
    pg = ui.page
    ui.login(world.tokens["admin"], f"/projects/default/runs/{world.train2}")
    pg.wait_for_selector("#graph .node[data-step=fit]", timeout=WAIT)
    nodes = pg.eval_on_selector_all("#graph .node", "ns => ns.map(n => [n.dataset.step, "
                                                    "n.dataset.state, n.textContent])")
    by = {n[0]: n for n in nodes}
    assert set(by) == {"shards", "score", "fit"}
    assert "[×4]" in by["score"][2]  # the map is one node, its items counted
    assert by["shards"][1] == "cached" and "cache hit" in by["shards"][2]
    assert pg.locator("#graph path.edge").count() == 2
    pg.click("#graph .node[data-step=fit]")
    pg.wait_for_selector("#attempts tbody tr", timeout=WAIT)
    row = pg.locator("#attempts tbody tr").first.inner_text()
    assert "succeeded" in row and "/ 2.0 GiB" in row  # peak memory against the limit
    pg.wait_for_selector("#metrics-panel .uplot", timeout=WAIT)
    # the timeline: a bar per task that ran (the map's items, not its parent)
    pg.wait_for_selector("#timeline-svg rect[data-task='fit']", timeout=WAIT)
    assert pg.locator("#timeline-svg rect[data-task^='score[']").count() == 4
    assert pg.locator("#timeline-svg rect[data-task='score']").count() == 0
    # artifacts: fit's output, read by nothing, previewed as JSON
    fit = pg.wait_for_selector("#artifacts tr:has(td:text-is('fit'))", timeout=WAIT)
    assert "cache hit" not in fit.inner_text()
    shards = pg.locator("#artifacts tr:has(td:text-is('shards'))").inner_text()
    assert "cache hit from" in shards and "score" in shards  # read by score
    fit.query_selector("button").click()
    preview = pg.wait_for_selector("#artifacts pre", timeout=WAIT).inner_text()
    loss = world.s.admin.get(f"{P}/runs/{world.train2}/metrics").json()["metrics"][0]["last"]
    assert float(preview) == pytest.approx(loss)
    ui.shot(world, "run")
    pg.click("#graph .node[data-step=shards]")
    pg.wait_for_selector("text=cache hit from", timeout=WAIT)
    pg.click("#graph .node[data-step=score]")  # the map, expanded into its items
    pg.click("#expand")
    pg.wait_for_selector("#graph .node[data-step='score[3]']", timeout=WAIT)
    assert pg.locator("#graph .node[data-step^='score']").count() == 4
    assert pg.locator("#graph path.edge").count() == 8  # shards -> each -> fit

    explain = world.s.admin.get(f"{P}/runs/{world.broken}/explain").json()
    pg.goto(f"/projects/default/runs/{world.broken}")
    panel = pg.wait_for_selector("#failure", timeout=WAIT)
    text = panel.inner_text()
    assert explain["cause"] in text and explain["fix"] in text
    assert f"{explain['where']['file']}:{explain['where']['line']}" in text
    assert "load_config" in text and "/nonexistent/config.yaml" in text
    assert pg.locator("#graph .node[data-step=load_config]").get_attribute(
        "data-state") == "failed"
    assert pg.locator("[data-action=resume]").count() == 1  # an owner may resume it
    ui.shot(world, "run-failed")
    assert ui.problems == []


def test_the_timeline_shows_each_attempt_and_the_run_page_the_bytes_read(world: World,
                                                                         ui: Page) -> None:
    pg = ui.page
    ui.login(world.tokens["admin"], f"/projects/default/runs/{world.flaky}")
    # the failed first attempt and its retry: two bars of the one task
    second = pg.wait_for_selector("#timeline-svg rect[data-task='wobble'][data-attempt='2']",
                                  timeout=WAIT)
    first = pg.locator("#timeline-svg rect[data-task='wobble'][data-attempt='1']")
    assert first.get_attribute("data-state") == "failed"
    assert second.get_attribute("data-state") == "succeeded"
    got = world.s.admin.get(f"{P}/runs/{world.flaky}/attempts").json()
    assert [(x["task_id"], x["number"], x["state"]) for x in got["items"]] == [
        ("wobble", 1, "failed"), ("wobble", 2, "succeeded")]
    assert second.get_attribute("data-node") == got["items"][1]["node"]
    assert "1 of them retries" in pg.locator("#timeline").inner_text()
    ui.shot(world, "run-retried")

    data = world.s.admin.get(f"{P}/runs/{world.reads}/data").json()
    assert data["reads"] == 3 and data["bytes"] == 3 * len("x\n0\n")  # the 3 shards
    pg.goto("/data?project=default")  # the data page leads to a run's reads
    pg.fill("#reads-form input[name=reads-run]", world.reads)
    pg.click("#reads-form button[type=submit]")
    pg.wait_for_url(f"**/runs/{world.reads}#data-read", timeout=WAIT)
    row = pg.wait_for_selector("#data-read tr[data-step=count_lines]", timeout=WAIT)
    step = next(x for x in data["steps"] if x["step"] == "count_lines")
    assert step["local_bytes"] + step["moved_bytes"] == step["bytes"] == data["bytes"]
    cells = row.inner_text().split("\t")
    assert cells[1].strip() == "3" and cells[2].strip() == f"{data['bytes']} B"
    for link in step["links"]:  # each link: source -> the node that read, with its bytes
        shown = pg.locator(f"#data-read tr[data-link='count_lines:{link['source']}->"
                           f"{link['node']}']").inner_text()
        assert link["node"] in shown and f"{link['bytes']} B" in shown
    ui.shot(world, "run-data")
    assert ui.problems == []


def test_logs_stream_into_the_open_page_while_the_step_runs(world: World, ui: Page,
                                                            tmp_path: Path) -> None:
    pg = ui.page
    ui.login(world.tokens["admin"], "/runs?project=default")
    pg.wait_for_selector("#runs tr[data-run]", timeout=WAIT)
    # a quota smaller than the step asks for, in a cohort whose other project lends: the
    # run borrows the rest while its step runs, and the cluster page says how much
    a = world.s.admin
    for project, body in (("elsewhere", {"quota": {"cpu": 4}}),
                          ("default", {"quota": {"cpu": 0.25}, "borrowing_limit": {"cpu": 2}})):
        r = a.put(f"/api/v1/projects/{project}/quota", json={**body, "cohort": "research"})
        assert r.status_code == 200, r.text
    gate = tmp_path / "gate"
    env = {**os.environ, "INSITU_HOME": str(world.s.home), "INSITU_DB_URL": world.s.db_url}
    proc = subprocess.Popen([sys.executable, "-m", "insitu", "run", f"{CASES}:gated",
                             "-p", f"gate={gate}", "--plain"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # the new run appears on the open runs page, running, without a reload
        row = pg.wait_for_selector("#runs tr[data-state=running]", timeout=WAIT * 3)
        rid = row.get_attribute("data-run")
        assert pg.locator(f"tr[data-run='{rid}'] [data-action=cancel]").count() == 1
        pg.click(f"tr[data-run='{rid}'] a")
        pg.wait_for_url(f"**/runs/{rid}*", timeout=WAIT)
        pg.wait_for_function("() => (document.getElementById('log') || {}).textContent"
                             "?.includes('first line, before the gate')", timeout=WAIT * 3)
        assert pg.locator("#run-state .badge").inner_text() == "running"
        assert "second line" not in pg.locator("#log").inner_text()
        ui.shot(world, "run-live")
        use = a.get(f"{P}/quota").json()["use"]["cpu"]
        assert use > 0.25  # the step holds more than the project's own quota
        cluster = Page(ui.ctx.browser, world.s.url)
        try:
            cluster.login(world.tokens["admin"], "/cluster")
            cell = cluster.page.wait_for_selector("[data-borrows='default:cpu']", timeout=WAIT)
            assert float(cell.inner_text()) == pytest.approx(use - 0.25)
            assert cluster.problems == []
        finally:
            cluster.close()
        gate.write_text("go")
        pg.wait_for_function("() => document.getElementById('log').textContent"
                             ".includes('second line, after the gate')", timeout=WAIT * 3)
        pg.wait_for_function("() => document.querySelector('#run-state .badge')"
                             ".textContent === 'succeeded'", timeout=WAIT * 3)
        assert proc.wait(timeout=300) == 0
        assert ui.problems == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert a.delete(f"{P}/quota").status_code == 204


def test_a_viewer_sees_no_controls_and_a_forged_change_is_refused(world: World,
                                                                  ui: Page) -> None:
    pg = ui.page
    ui.login(world.tokens["vera"], f"/projects/default/runs/{world.broken}")
    pg.wait_for_selector("#failure", timeout=WAIT)
    assert pg.locator("[data-action]").count() == 0
    pg.goto("/runs?project=default")
    pg.wait_for_selector(f"#runs tr[data-run='{world.broken}']", timeout=WAIT)
    assert pg.locator("[data-action]").count() == 0
    # what a cancel button would send, forged from the page with the session's CSRF value
    got = pg.evaluate("""async (url) => {
        const csrf = document.cookie.match(/insitu_csrf=([^;]*)/)[1];
        const r = await fetch(url, {method: 'POST', headers: {'X-Insitu-CSRF': csrf}});
        return [r.status, (await r.json()).detail];
    }""", f"{P}/runs/{world.broken}/resume")
    assert got[0] == 403 and "vera is viewer" in got[1]
    pg.goto(f"/projects/default/models/{world.model}")  # no alias controls either
    pg.wait_for_selector("#versions tbody tr", timeout=WAIT)
    assert pg.locator("#alias-form, [data-action]").count() == 0
    got = pg.evaluate("""async (url) => {
        const csrf = document.cookie.match(/insitu_csrf=([^;]*)/)[1];
        const r = await fetch(url, {method: 'PUT', body: JSON.stringify({version: 1}),
            headers: {'X-Insitu-CSRF': csrf, 'Content-Type': 'application/json'}});
        return r.status;
    }""", f"{P}/models/{world.model}/aliases/champion")
    assert got == 403
    ui.problems.clear()


def test_rerun_with_edited_parameters_from_the_run_page(world: World, ui: Page) -> None:
    pg = ui.page
    ui.login(world.tokens["admin"], f"/projects/default/runs/{world.train2}")
    pg.click("#rerun summary")
    lr = pg.wait_for_selector("#rerun-form input[name=param-lr]", timeout=WAIT)
    assert lr.input_value() == "0.5"  # the run's own parameters, to edit
    lr.fill("fast")  # refused, naming the parameter and the fix
    pg.click("#rerun-form button[type=submit]")
    err = pg.wait_for_selector("#rerun .error", timeout=WAIT).inner_text()
    assert "parameter 'lr' expects float, got 'fast'" in err and "Fix:" in err
    ui.problems.clear()  # the refusal (400) was expected
    lr.fill("0.75")
    pg.click("#rerun-form button[type=submit]")
    pg.wait_for_url(lambda u: "/runs/" in u and world.train2 not in u, timeout=WAIT)
    new = pg.url.rsplit("/", 1)[1]
    pg.wait_for_function(f"() => document.querySelector('h1 .mono')?.textContent === '{new}'"
                         " && document.querySelector('#run-state .badge').textContent"
                         " === 'succeeded'", timeout=WAIT * 3)  # the new run's page, live
    run = world.s.admin.get(f"{P}/runs/{new}").json()
    assert run["params"] == {"n": 4, "lr": 0.75} and run["labels"]["rerun_of"] == world.train2
    fit = next(x for x in world.s.admin.get(f"{P}/runs/{new}/artifacts").json()
               if x["step"] == "fit")
    assert fit["state"] == "succeeded" and fit["cached_from"] is None
    value = world.s.admin.get(f"{P}/runs/{new}/artifacts/{fit['digest']}/preview").json()
    assert value["value"] == pytest.approx(0.25 ** 5)  # fit ran with lr 0.75: (1 - lr) ** 5
    assert f"rerun_of={world.train2}" in pg.locator("#main").inner_text()
    assert ui.problems == []


def test_another_projects_owner_cannot_see_the_run(world: World, ui: Page) -> None:
    pg = ui.page
    ui.login(world.tokens["otto"], f"/projects/default/runs/{world.train}")
    err = pg.wait_for_selector(".error", timeout=WAIT)
    assert "no project 'default'" in err.inner_text()
    assert pg.locator("#graph").count() == 0
    pg.goto("/runs")
    pg.wait_for_selector("select[name=project]", timeout=WAIT)
    assert pg.eval_on_selector_all("select[name=project] option",
                                   "os => os.map(o => o.value)") == ["elsewhere"]
    assert world.train not in pg.content()


def test_the_other_pages_load_without_errors(world: World, ui: Page) -> None:
    pg = ui.page
    ui.login(world.tokens["admin"], "/models?project=default")
    pg.wait_for_selector(f"#models a:text('{world.model}')", timeout=WAIT)
    ui.shot(world, "models")
    pg.click(f"#models a:text('{world.model}')")
    pg.wait_for_selector("#versions tbody tr", timeout=WAIT)
    text = pg.locator("#versions").inner_text()
    assert "champion" in text and world.train in text  # alias, lineage to the run
    ui.shot(world, "model")
    pg.fill("#alias-form input[name=alias]", "champion")  # move it to v2
    pg.select_option("#alias-form select", "2")
    pg.click("#alias-form button[type=submit]")
    pg.wait_for_selector("#versions tr:has(td:text-is('v2')) .chips span:text-is('champion')",
                         timeout=WAIT)
    got = world.s.admin.get(f"{P}/models/{world.model}").json()
    assert {v["version"]: v["aliases"] for v in got["versions"]} == {1: [], 2: ["champion"]}
    r = world.s.admin.post(f"{P}/endpoints", json={  # served: v1, with v2 as a canary
        "name": "ep-ui", "model": f"{world.served}:1", "cpu": 0.1,
        "traffic": {"canary": 2, "percent": 10}})
    assert r.status_code == 201, r.text
    try:
        deadline = time.monotonic() + 180
        while (state := world.s.admin.get(f"{P}/endpoints/ep-ui").json()["status"]["state"]
               ) != "running":
            assert state in ("pending", "starting") and time.monotonic() < deadline, state
            time.sleep(0.2)
        pg.goto(f"/projects/default/models/{world.served}")
        row = pg.wait_for_selector("#endpoints tr[data-endpoint=ep-ui]", timeout=WAIT)
        assert row.query_selector("[data-state]").get_attribute("data-state") == "running"
        text = row.inner_text()
        assert f"{world.served}:1" in text and "canary v2: 10 %" in text
        assert f"{world.served}:1: 90 %" in text
        ui.shot(world, "model-endpoints")
    finally:
        assert world.s.admin.delete(f"{P}/endpoints/ep-ui").status_code == 204
    pg.goto(f"/projects/default/datasets/{world.dataset}")
    pg.wait_for_selector("#shard-map tbody tr", timeout=WAIT)
    assert pg.locator("#shard-map tbody tr").count() == 3
    assert pg.locator("#shard-map td.cell-on").count() >= 3  # each shard on a node
    ui.shot(world, "dataset")
    pg.goto("/data?project=default")
    pg.wait_for_selector(f"#datasets a:text('{world.dataset}')", timeout=WAIT)
    r = world.s.admin.put("/api/v1/projects/elsewhere/quota", json={
        "quota": {"cpu": 4, "memory": "8GiB"}, "cohort": "research",
        "borrowing_limit": {"cpu": 2}})
    assert r.status_code == 200, r.text
    pg.goto("/cluster")
    pg.wait_for_selector("#nodes tbody tr", timeout=WAIT)
    quota = pg.wait_for_selector("#quotas tr:has(td:text-is('cpu'))", timeout=WAIT).inner_text()
    assert "elsewhere" in quota and "0 of 4" in quota and "2" in quota and "research" in quota
    ui.shot(world, "cluster")
    pg.goto(f"/compare?project=default&runs={world.train},{world.train2}")
    pg.wait_for_selector("#compare-params", timeout=WAIT)
    differs = pg.eval_on_selector_all("#compare-params tr[data-differs='1'] td:first-child",
                                      "ts => ts.map(t => t.textContent)")
    assert "lr" in differs and "n" not in differs  # lr differs, n does not
    pg.wait_for_selector(".charts .uplot", timeout=WAIT)
    assert pg.locator("#parallel polyline").count() == 2  # a line per run
    ui.shot(world, "compare")
    pg.goto("/studies?project=default")
    pg.click(f"#studies a:text('{world.search}/bowl')")
    pg.wait_for_selector("#trials tbody tr", timeout=WAIT)
    assert pg.locator("#trials tbody tr").count() == 4
    study = world.s.admin.get(f"{P}/runs/{world.search}/studies/bowl").json()
    assert f"#{study['best']['number']}:" in pg.locator(".panel", has_text="Best trial")\
        .inner_text()
    assert pg.locator("#importance tr").count() == 2  # x and y
    ui.shot(world, "study")
    assert ui.problems == []


def test_insitu_ui_serves_the_local_store(world: World, browser: Any,
                                          tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {**os.environ, "INSITU_HOME": str(home)}
    env.pop("INSITU_DB_URL", None)
    r = subprocess.run([sys.executable, "-m", "insitu", "run", f"{CASES}:broken", "--plain"],
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stdout + r.stderr
    proc = subprocess.Popen([sys.executable, "-m", "insitu", "ui", "--port",
                             str(_free_port())], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        url = ""
        deadline = time.monotonic() + 120
        while "#token=" not in url:  # the command prints its URL once it listens
            assert time.monotonic() < deadline and proc.poll() is None
            url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        base = url.split("/login")[0]
        assert httpx.get(f"{base}/api/v1/projects").status_code == 401  # no token: nothing
        p = Page(browser, base)
        try:
            p.page.goto(url)
            row = p.page.wait_for_selector("#runs tr[data-run]", timeout=WAIT)
            assert row.get_attribute("data-state") == "failed"
            assert "#token" not in p.page.url  # the token left the address bar
            p.page.click("#runs tr[data-run] a")
            p.page.wait_for_selector("#failure", timeout=WAIT)
            assert "local" in p.page.locator("#who").inner_text()
            assert p.problems == []
        finally:
            p.close()
    finally:
        stop(proc)


def test_pages_hold_no_data_and_api_paths_stay_the_apis(world: World) -> None:
    url = world.s.url
    r = httpx.get(f"{url}/", follow_redirects=False)
    assert r.status_code == 307 and r.headers["location"] == "/runs"
    page = httpx.get(f"{url}/projects/default/runs/{world.train}")  # no login needed...
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert world.train not in page.text  # ...as the shell holds no data
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    js = httpx.get(f"{url}/static/vendor/dagre.min.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]
    nope = httpx.get(f"{url}/api/v1/nope")  # not the shell: the API's own 404
    assert nope.status_code == 404
    assert nope.headers["content-type"] == "application/problem+json"


def test_admin_page_makes_and_revokes_a_token_and_shows_the_audit_log(world: World,
                                                                      ui: Page) -> None:
    pg = ui.page
    ui.login(world.tokens["admin"], "/admin?project=default")
    pg.fill("input[name=token-name]", "from the page")
    pg.select_option("select[name=token-project]", "default")  # in the project's audit log
    pg.click("#tokens button[type=submit]")
    shown = pg.wait_for_selector("#new-token code", timeout=WAIT).inner_text()
    assert shown.startswith("isk_")
    assert httpx.get(f"{world.s.url}/api/v1/whoami",
                     headers={"Authorization": f"Bearer {shown}"}).status_code == 200
    tid = shown.split("_")[1]
    pg.click(f"#tokens tr[data-token='{tid}'] button")
    pg.wait_for_selector(f"#tokens tr[data-token='{tid}']:not(:has(button))", timeout=WAIT)
    assert httpx.get(f"{world.s.url}/api/v1/whoami",
                     headers={"Authorization": f"Bearer {shown}"}).status_code == 401
    pg.wait_for_selector("#audit td:text-is('token.revoke')", timeout=WAIT)
    assert pg.locator("#members select").count() >= 1  # an owner changes roles
    ui.shot(world, "admin")
    pg.fill("#projects input[name=project-name]", "made-here")  # a server admin makes one
    pg.fill("#projects input[name=project-description]", "from the page")
    pg.click("#projects button[type=submit]")
    pg.wait_for_url("**/admin?project=made-here", timeout=WAIT)
    me = world.s.admin.get("/api/v1/whoami").json()["user"]
    pg.wait_for_selector(f"#members td:text-is('{me}')", timeout=WAIT)
    made = world.s.admin.get("/api/v1/projects/made-here").json()
    assert made["description"] == "from the page" and made["role"] == "owner"
    assert pg.locator("#members select").count() >= 1  # its maker owns it
    assert ui.problems == []
    viewer = Page(ui.ctx.browser, world.s.url)
    try:
        viewer.login(world.tokens["vera"], "/admin?project=default")
        viewer.page.wait_for_selector("#members td:text-is('vera')", timeout=WAIT)
        assert viewer.page.locator("#members select, #members button").count() == 0
        assert viewer.page.locator("#projects").count() == 0  # not a server admin
        assert "Owners of the project read" in viewer.page.locator("#audit").inner_text()
    finally:
        viewer.close()


def test_a_token_trades_for_a_session_unless_it_is_scoped_or_a_service_accounts(
        world: World) -> None:
    a, url = world.s.admin, world.s.url
    r = httpx.post(f"{url}/api/v1/auth/session",
                   headers={"Authorization": f"Bearer {world.tokens['vera']}"})
    assert r.status_code == 204
    cookies = r.headers.get_list("set-cookie")
    session = next(c for c in cookies if c.startswith("insitu_session="))
    assert "HttpOnly" in session and "SameSite=lax" in session
    assert any(c.startswith("insitu_csrf=") and "HttpOnly" not in c for c in cookies)
    me = httpx.get(f"{url}/api/v1/whoami", cookies={"insitu_session": r.cookies[
        "insitu_session"]}).json()
    assert me["user"] == "vera" and me["token"].startswith("ses_")
    scoped = a.post("/api/v1/tokens", json={"name": "s", "project": "default"}).json()
    r = httpx.post(f"{url}/api/v1/auth/session",
                   headers={"Authorization": f"Bearer {scoped['token']}"})
    assert r.status_code == 400 and "limited to project 'default'" in r.json()["detail"]
    assert "set-cookie" not in r.headers
    assert a.post("/api/v1/users", json={"name": "robot", "service": True}).status_code == 201
    bot = a.post("/api/v1/tokens", json={"name": "b", "user": "robot"}).json()
    r = httpx.post(f"{url}/api/v1/auth/session",
                   headers={"Authorization": f"Bearer {bot['token']}"})
    assert r.status_code == 400 and "service account" in r.json()["detail"]
    assert httpx.post(f"{url}/api/v1/auth/session").status_code == 401
