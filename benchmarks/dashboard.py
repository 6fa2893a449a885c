"""How fast the dashboard shows big data, measured in a real browser (Debian's Chromium
through Playwright) against a real ``insitu server`` on loopback (SQLite):

- the runs page with N runs in the project (default 100,000): from navigation start to its
  first page of rows drawn;
- a run whose map has M items (default 1,000): from navigation start to its graph drawn.

Each is measured in the browser (the mark ``insitu:page`` the dashboard sets once the
page's content, the rows or the graph, is in the document, from the navigation's start),
several times; the table gives the median
and the slowest. A benchmark, not a test: it asserts nothing about time.

    python benchmarks/dashboard.py [--runs 100000] [--items 1000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE.parent / "tests" / "server"))

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def fill(db_url: str, runs: int, items: int) -> str:
    """``runs`` runs in the project ``default``, and one more run whose map has ``items``
    items in mixed states (the newest); its id."""
    from insitu.store import RunRecord, TaskRecord, open_store

    store = open_store(db_url)
    t0 = time.time() - runs - 10
    batch: list[object] = []
    for i in range(runs):
        batch.append(RunRecord(id=f"b{i:011d}", pipeline=f"pipe{i % 7}",
                               state=("succeeded", "failed", "running")[i % 3],
                               spec={"name": "p", "steps": []}, params={"i": i},
                               created_at=t0 + i, project="default"))
        if len(batch) == 2000:
            store.put(*batch)
            batch = []
    step = {"function": {"qualname": "f"}, "resources": {}, "retries": {"max": 0},
            "cache": True}
    spec = {"name": "bigmap", "steps": [
        {**step, "id": "items", "name": "items", "args": {}},
        {**step, "id": "score", "name": "score", "args": {"i": {"output": "items"}},
         "map": {"arg": "i", "over": {"output": "items"}}},
        {**step, "id": "fit", "name": "fit", "args": {"scores": {"output": "score"}}}]}
    rid = "bigmap000001"
    now = time.time()
    recs: list[object] = [RunRecord(id=rid, pipeline="bigmap", state="failed", spec=spec,
                                    params={}, created_at=now, project="default"),
                          TaskRecord(run_id=rid, id="items", step_id="items",
                                     state="succeeded", seq=0),
                          TaskRecord(run_id=rid, id="score", step_id="score",
                                     state="failed", seq=1, map_size=items)]
    states = ("succeeded", "succeeded", "succeeded", "cached", "failed", "skipped")
    recs += [TaskRecord(run_id=rid, id=f"score[{i}]", step_id="score",
                        state=states[i % len(states)], seq=2 + i, map_index=i,
                        started_at=now, ended_at=now + 1) for i in range(items)]
    recs.append(TaskRecord(run_id=rid, id="fit", step_id="fit", state="skipped",
                           seq=2 + items))
    batch += recs
    store.put(*batch)
    store.close()
    return rid


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=100_000)
    ap.add_argument("--items", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    from conftest import start_server, stop_server

    home = Path(tempfile.mkdtemp(prefix="insitu-bench-ui-"))
    db_url = f"sqlite:///{home / 'server.db'}"
    s = start_server(db_url, home)
    try:
        t = time.monotonic()
        rid = fill(db_url, args.runs, args.items)
        print(f"filled {args.runs} runs and a {args.items}-item map in "
              f"{time.monotonic() - t:.1f} s")
        rows = []
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            ctx = b.new_context(base_url=s.url, viewport={"width": 1280, "height": 900})
            page = ctx.new_page()
            page.goto("/login")
            page.fill("input[name=token]", s.admin_token)
            page.click("button[type=submit]")
            page.wait_for_url("**/runs", timeout=60_000)
            for what, url, sel in (
                    (f"runs page, {args.runs:,} runs: first page drawn", "/runs?project=default",
                     "#runs tr[data-run]"),
                    (f"run page, {args.items:,}-item map: graph drawn",
                     f"/projects/default/runs/{rid}", "#graph .node[data-step=score]")):
                ms = []
                for _ in range(args.repeat):
                    page.goto(url)
                    page.wait_for_selector(sel, timeout=60_000)
                    # the mark the page sets once its content is in the document
                    ms.append(float(page.evaluate(
                        "performance.getEntriesByName('insitu:page').at(-1).startTime")))
                rows.append((what, statistics.median(ms), max(ms)))
            b.close()
    finally:
        stop_server(s)
    print(f"\n| measured in the browser (ms from navigation start) | median | slowest "
          f"(of {args.repeat}) |\n| --- | --- | --- |")
    for what, med, worst in rows:
        print(f"| {what} | {med:.0f} | {worst:.0f} |")


if __name__ == "__main__":
    main()
