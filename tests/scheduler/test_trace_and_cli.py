"""Trace loading (bad input gives file:row:field and the fix), simulators, and `insitu sim`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from insitu.scheduler import TraceError, load_nodes, load_tasks, packing_bound, run_packing
from insitu.scheduler._cli import sim
from insitu.scheduler._online import run_online
from insitu.scheduler._sim import gpu_capacity, packing_tasks, scale_cluster

NODES = "sn,cpu_milli,memory_mib,gpu,model\n" + "".join(
    f"n{i},32000,131072,{g},{m}\n" for i, (g, m) in enumerate([(2, "T4"), (4, "T4"), (8, "V100"),
                                                               (1, "T4")]))
HEAD = "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,creation_time,deletion_time\n"


def _tasks(n: int = 40) -> str:
    rows = []
    for i in range(n):
        g, milli = [(0, 0), (1, 500), (1, 1000), (2, 1000), (1, 250)][i % 5]
        spec = "T4" if i % 7 == 0 and g else ""
        rows.append(f"t{i},{1000 + 500 * (i % 4)},1024,{g},{milli},{spec},"
                    f"{'LS' if i % 2 else 'BE'},{i * 10},{i * 10 + 35}\n")
    return HEAD + "".join(rows)


@pytest.fixture
def trace(tmp_path: Path) -> Path:
    (tmp_path / "openb_node_list_gpu_node.csv").write_text(NODES)
    p = tmp_path / "pods.csv"
    p.write_text(_tasks())
    return p


def test_malformed_row_names_file_row_and_field(tmp_path: Path) -> None:
    p = tmp_path / "bad.csv"
    p.write_text(HEAD + "t0,1000,1024,1,500,,LS,0,10\nt1,lots,1024,1,500,,LS,0,10\n")
    with pytest.raises(TraceError) as e:
        load_tasks(p)
    assert str(e.value) == (f"{p}:3: field 'cpu_milli' is 'lots', not a number >= 0\n"
                            "  fix: fix row 3 of bad.csv")


def test_unknown_gpu_type_and_missing_column(tmp_path: Path) -> None:
    p = tmp_path / "spec.csv"
    p.write_text(HEAD + "t0,1000,1024,1,500,H200,LS,0,10\n")
    with pytest.raises(TraceError, match=r"spec.csv:2: field 'gpu_spec' names unknown GPU type "
                                         r"H200\n  fix: use one of T4, V100"):
        load_tasks(p, models={"T4", "V100"})
    q = tmp_path / "cols.csv"
    q.write_text("name,cpu_milli\nt0,1\n")
    with pytest.raises(TraceError, match="missing column"):
        load_tasks(q)
    with pytest.raises(TraceError, match="does not exist"):
        load_nodes(tmp_path / "nope.csv")


def test_packing_is_deterministic_and_below_the_bound(trace: Path) -> None:
    nodes = load_nodes(trace.parent / "openb_node_list_gpu_node.csv")
    reqs = [t.request for t in load_tasks(trace)]
    arrivals = packing_tasks(reqs, gpu_capacity(nodes), 7)
    assert sum(r.total_gpu_milli for r in arrivals) >= 1.3 * gpu_capacity(nodes)
    bound = packing_bound(nodes, arrivals, time_limit=2).share
    for policy in ("insitu", "fgd", "random"):
        a = run_packing(nodes, reqs, policy=policy, seed=7)
        b = run_packing(nodes, reqs, policy=policy, seed=7)
        assert (a.allocated_milli, a.placed) == (b.allocated_milli, b.placed)
        assert 0 < a.share <= bound + 1e-9
    assert len(scale_cluster(nodes, 10)) == 10


def test_online_mode_runs_every_task(trace: Path) -> None:
    nodes = load_nodes(trace.parent / "openb_node_list_gpu_node.csv")
    r = run_online(nodes, load_tasks(trace), policy="insitu")
    assert r.started == r.tasks == 40
    assert set(r.queue_share) == {"BE", "LS"}
    assert r.delay_p50 >= 0 and 0 <= r.mean_utilisation <= 1


def test_cli_packing_writes_json_and_plot(trace: Path, tmp_path: Path) -> None:
    out, png = tmp_path / "r.json", tmp_path / "r.png"
    res = CliRunner().invoke(sim, ["--trace", str(trace), "--policies", "insitu,best_fit",
                                   "--seeds", "1-2", "--out", str(out), "--plot", str(png)])
    assert res.exit_code == 0, res.output
    assert "insitu" in res.output.splitlines()[0]
    assert set(json.loads(out.read_text())["results"]) == {"insitu", "best_fit"}
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_cli_offline_packing_column_and_its_mode(trace: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    res = CliRunner().invoke(sim, ["--trace", str(trace), "--policies", "insitu", "--seeds", "1",
                                   "--offline", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "offline" in res.output.splitlines()[0]
    rep = json.loads(out.read_text())
    assert rep["results"]["insitu"]["share"] <= rep["offline"]["share"] <= 1.0
    res = CliRunner().invoke(sim, ["--mode", "online", "--trace", str(trace), "--offline"])
    assert res.exit_code == 1
    assert "--offline applies to packing runs only" in res.output and "fix: drop" in res.output


def test_cli_online(trace: Path) -> None:
    res = CliRunner().invoke(sim, ["--mode", "online", "--trace", str(trace),
                                   "--policies", "insitu"])
    assert res.exit_code == 0, res.output
    assert "delay to first start" in res.output and " p99 " in res.output


def test_cli_bad_input_is_a_clear_error(trace: Path, tmp_path: Path) -> None:
    res = CliRunner().invoke(sim, ["--trace", str(trace), "--policies", "nope"])
    assert res.exit_code == 1
    assert "unknown policy 'nope'" in res.output and "fix: use one of insitu" in res.output
    bad = tmp_path / "bad.csv"
    bad.write_text(HEAD + "t0,1000,1024,1.5,500,,LS,0,10\n")
    res = CliRunner().invoke(sim, ["--trace", str(bad), "--nodes",
                                   str(trace.parent / "openb_node_list_gpu_node.csv")])
    assert res.exit_code == 1
    assert "bad.csv:2: field 'num_gpu' is 1.5, not a whole number" in res.output
    big = tmp_path / "big.csv"
    big.write_text(HEAD + "t0,1000,1024,16,1000,,LS,0,10\nt1,1000,1024,1,500,,LS,0,10\n")
    res = CliRunner().invoke(sim, ["--trace", str(big), "--nodes",
                                   str(trace.parent / "openb_node_list_gpu_node.csv"),
                                   "--policies", "insitu"])
    assert res.exit_code == 0
    assert "task t0 can never be placed: 0 of 4 nodes fit: 4 have fewer than 16 GPUs" in \
        res.output


def test_online_load_sets_the_offered_load_deterministically(trace: Path) -> None:
    from insitu.scheduler._online import offered_load, replay

    nodes = load_nodes(trace.parent / "openb_node_list_gpu_node.csv")
    tasks = load_tasks(trace)
    cap = gpu_capacity(nodes)
    a = run_online(nodes, tasks, policy="insitu", load=0.5, cycles=3)
    b = run_online(nodes, tasks, policy="insitu", load=0.5, cycles=3)
    assert (a.curve, a.delay_p99, a.started) == (b.curve, b.delay_p99, b.started)
    three = replay(tasks, 3)  # the peak stays within the load, and the largest speed-up does
    assert a.offered == pytest.approx(offered_load(three, cap, a.speedup)) and a.offered <= 0.5
    assert offered_load(three, cap, a.speedup * 1.001) > 0.5
    assert a.speedup > 1
    assert a.started == a.tasks == 120
    assert set(a.delay_by_queue) == {"BE", "LS"}
    assert offered_load(tasks, cap, 2.0) >= offered_load(tasks, cap, 1.0)
    with pytest.raises(TraceError, match="cannot offer"):
        run_online(nodes, tasks, policy="insitu", load=50.0)


def test_online_priorities_from_qos_and_gangs_from_the_trace(tmp_path: Path) -> None:
    (tmp_path / "openb_node_list_gpu_node.csv").write_text("sn,cpu_milli,memory_mib,gpu,model\n"
                                                          "n0,32000,131072,2,T4\n")
    p = tmp_path / "pods.csv"
    p.write_text("name,cpu_milli,memory_mib,num_gpu,gpu_milli,qos,creation_time,deletion_time,"
                 "gang,gang_size\n"
                 "be,1000,1024,2,1000,BE,0,100,,\n"
                 "g0,1000,1024,1,1000,LS,10,50,g,2\n"
                 "g1,1000,1024,1,1000,LS,10,50,g,2\n")
    nodes = load_nodes(tmp_path / "openb_node_list_gpu_node.csv")
    tasks = load_tasks(p)
    assert tasks[1].request.gang == "g" and tasks[1].request.gang_size == 2
    r = run_online(nodes, tasks, policy="insitu")
    assert r.preemptions == 1  # the LS gang evicts the best-effort task, which restarts
    assert r.started == 3 and r.delay_by_queue["LS"] == (0.0, 0.0)
    res = CliRunner().invoke(sim, ["--mode", "online", "--trace", str(p), "--policies",
                                   "insitu", "--load", "0.5", "--speedup", "2"])
    assert res.exit_code == 1 and "either load or speedup" in res.output


@pytest.mark.parametrize(("args", "option", "words"), [
    (["--grow", "inf"], "--grow", "inf is not allowed; give a finite number above 0"),
    (["--grow", "nan"], "--grow", "nan is not allowed"),
    (["--grow", "0"], "--grow", "e.g. --grow 1.3"),
    (["--grow", "1e9"], "--grow", "at most 100"),
    (["--mode", "online", "--speedup", "nan"], "--speedup", "nan is not allowed"),
    (["--mode", "online", "--speedup", "-2"], "--speedup", "e.g. --speedup 10"),
    (["--mode", "online", "--load", "inf"], "--load", "inf is not allowed"),
    (["--seeds", "0-999999999"], "--seeds", "more than 1,000 seeds"),
    (["--seeds", "51-42"], "--seeds", "runs backwards; write 42-51"),
    (["--seeds", ","], "--seeds", "names no seed"),
    (["--seeds", "-3"], "--seeds", "is not a list of seeds"),
    (["--mode", "online", "--cycles", "0"], "--cycles", "give 1 to 100"),
    (["--mode", "online", "--cycles", "100000000"], "--cycles", "give 1 to 100"),
])
def test_cli_bad_numbers_are_one_clear_error_before_any_work(
        trace: Path, args: list[str], option: str, words: str) -> None:
    res = CliRunner().invoke(sim, ["--trace", str(trace), "--policies", "insitu", *args])
    assert res.exit_code == 2, res.output
    assert option in res.output and words in res.output, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)
    assert "Traceback" not in res.output


def test_cli_out_and_plot_paths_are_checked_before_the_run(trace: Path, tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "folder" / "r.json"
    res = CliRunner().invoke(sim, ["--trace", str(trace), "--out", str(missing)])
    assert res.exit_code == 2
    assert f"folder {missing.parent} does not exist; create it first" in res.output
    res = CliRunner().invoke(sim, ["--trace", str(trace), "--plot", str(tmp_path)])
    assert res.exit_code == 2 and "is a folder; give a file name" in res.output
    res = CliRunner().invoke(sim, ["--trace", str(trace), "--out", "/proc/insitu-sim.json"])
    assert res.exit_code == 2 and "/proc/insitu-sim.json cannot be written (" in res.output
    assert not (tmp_path / "r.json").exists()
