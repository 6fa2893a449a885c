"""``insitu serve`` as a user runs it: refusals with one clear message before anything
starts, a warning off loopback, payloads logged and read back as a DataFrame, and no
process left behind after Ctrl-C."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from served import HERE, Http, ServeProcess, body, wait_for

from insitu.serving import read_payloads


def _serve(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "INSITU_HOME": str(home), "COLUMNS": "300",
           "PYTHONPATH": str(HERE.parents[1] / "src")}
    return subprocess.run([sys.executable, "-m", "insitu", "serve", *args], env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args, text", [
    (["nosuch@champion"], "no model named 'nosuch'"),
    (["sk@nosuch"], "model 'sk' has no alias 'nosuch'"),
    (["sk:7"], "model 'sk' has no version 7"),
    (["data@champion"], "model data:1 has no flavour insitu can serve"),
    (["sk@champion", "--canary", "sk:9"], "model 'sk' has no version 9"),
    (["sk@champion", "--canary", "other:2"], "--canary 'other:2' names model 'other'"),
    (["sk@champion", "--canary", "sk:2", "--percent", "150"],
     "150.0 is not in the range 0<=x<=100"),
    (["sk@champion", "--min", "3", "--max", "2"], "replicas must satisfy 0 <= min <= max"),
    (["sk@champion", "--route", "b=2"], "A/B routes without the header"),
    (["sk@champion", "--host", "nosuchhost.invalid"], "cannot listen on --host"),
])
def test_bad_input_is_refused_with_one_message(zoo_home: Path, args: list[str],
                                                text: str) -> None:
    r = _serve(zoo_home, *args)
    assert r.returncode != 0 and text in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_off_loopback_warns_logs_payloads_and_leaves_nothing_running(zoo_home: Path) -> None:
    s = ServeProcess(zoo_home, "sk@champion", "--host", "0.0.0.0", "--payloads", "1",
                     "--payload-max-bytes", "100")
    try:
        s.wait_live()
        h = Http(s.url)
        for _ in range(5):
            assert h.post("/v2/models/sk/infer", body())[0] == 200
        replicas = [p.pid for p in psutil.Process(s.proc.pid).children(recursive=True)]
        assert len(replicas) == 2  # the warm process and one replica
        h.close()
    finally:
        out, err = s.stop()
    assert "warning: listening on 0.0.0.0" in err and "no authentication" in err
    wait_for(lambda: not any(psutil.pid_exists(p) for p in replicas), what="replicas gone")
    frame = read_payloads("sk", url=str(zoo_home / "payloads"))
    assert len(frame) == 5 and set(frame["status"]) == {200}
    assert frame["truncated"].all() and frame["request"].str.len().max() <= 100
    assert set(frame["version"]) == {1} and set(frame["kind"]) == {"served"}
