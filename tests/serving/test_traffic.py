"""Traffic on one live endpoint: canary shares over 2,000 requests, promote and rollback
while a load loop runs (no failed request), shadow answers logged and never returned, A/B
by a header; and the refusals of bad policies."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from served import Http, body, wait_for

import insitu
from insitu.errors import UserError
from insitu.serving import EndpointSpec, PayloadLogging, Server, Traffic, read_payloads


@pytest.fixture(scope="module")
def server(zoo_home: Path) -> Iterator[Server]:
    mp = pytest.MonkeyPatch()
    mp.setenv("INSITU_HOME", str(zoo_home))
    insitu.models.set_alias("sk", "traffic", 1)
    payloads = str(zoo_home.parent / "payloads")
    with Server(EndpointSpec(model="sk@traffic", name="tr",
                             payloads=PayloadLogging(sample=0.0, url=payloads))) as s:
        yield s
    mp.undo()


def _put(h: Http, **traffic: object) -> tuple[int, object]:
    status, _, doc = h.request("PUT", "/admin/traffic", json.dumps(traffic).encode())
    return status, doc


def test_canary_takes_its_share(server: Server) -> None:
    h = Http(server.url)
    assert _put(h, canary=2, percent=10)[0] == 200
    seen = Counter(h.post("/v2/models/tr/infer", body())[1]["x-insitu-version"]
                   for _ in range(2000))
    assert set(seen) == {"sk:1", "sk:2"}
    assert 0.07 <= seen["sk:2"] / 2000 <= 0.13, seen  # 10 %, about 4.5 standard deviations
    assert _put(h)[0] == 200
    h.close()


class Load:
    """A load loop on its own connection, recording every answer until stopped."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.answers: list[tuple[int, str]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run)
        self.thread.start()

    def _run(self) -> None:
        h = Http(self.url)
        while not self.stop.is_set():
            status, headers, _ = h.post("/v2/models/tr/infer", body())
            self.answers.append((status, headers.get("x-insitu-version", "")))
        h.close()

    def finish(self) -> list[tuple[int, str]]:
        self.stop.set()
        self.thread.join(timeout=60)
        return self.answers


def test_promote_and_rollback_under_load_fail_no_request(server: Server) -> None:
    h = Http(server.url)
    load = Load(server.url)
    assert _put(h, canary=2, percent=50)[0] == 200
    wait_for(lambda: any(v == "sk:2" for _, v in load.answers), what="canary answers")
    status, _, doc = h.post("/admin/promote", b"")
    assert (status, doc) == (200, {"stable": 2})
    assert insitu.models.get_version("sk@traffic").version == 2  # the alias moved
    mark = len(load.answers)
    wait_for(lambda: len(load.answers) > mark + 200, what="answers after promote")
    assert {v for _, v in load.answers[mark + 5:]} == {"sk:2"}
    # roll back a canary of the old version
    assert _put(h, canary=1, percent=50)[0] == 200
    wait_for(lambda: any(v == "sk:1" for _, v in load.answers[mark + 200:]),
             what="canary answers")
    assert h.post("/admin/rollback", b"")[2] == {"stable": 2}
    mark = len(load.answers)
    wait_for(lambda: len(load.answers) > mark + 200, what="answers after rollback")
    answers = load.finish()
    assert {v for _, v in answers[mark + 5:]} == {"sk:2"}
    print(f"promote and rollback under load: {len(answers)} requests, "
          f"{sum(a[0] != 200 for a in answers)} failed, {Counter(v for _, v in answers)}")
    assert [a for a in answers if a[0] != 200] == []  # not one failed request
    assert len(answers) > 400
    assert insitu.models.get_version("sk@traffic").version == 2
    status, _, doc = h.post("/admin/rollback", b"")
    assert status == 409 and "no canary to roll back" in doc["error"]
    h.close()


def test_shadow_answers_are_logged_never_returned(server: Server, zoo_home: Path) -> None:
    h = Http(server.url)
    stable = server.endpoint.stable
    shadow = 1 if stable == 2 else 2
    assert _put(h, shadow=shadow)[0] == 200
    for _ in range(30):
        status, headers, doc = h.post("/v2/models/tr/infer", body())
        assert status == 200 and headers["x-insitu-version"] == f"sk:{stable}"
        assert doc["model_version"] == str(stable)
    url = str(zoo_home.parent / "payloads")

    def logged() -> object:
        server.endpoint.payloads.flush()  # what the writer holds is written
        f = read_payloads("tr", url=url)
        return (f,) if (f["kind"] == "shadow").sum() >= 30 else None

    (frame,) = wait_for(logged, what="shadow payloads")
    shadows = frame[frame["kind"] == "shadow"]
    assert set(shadows["version"]) == {shadow} and set(shadows["status"]) == {200}
    assert json.loads(shadows["response"].iloc[0])["model_version"] == str(shadow)
    assert _put(h)[0] == 200
    h.close()


def test_ab_routes_by_header(server: Server) -> None:
    h = Http(server.url)
    stable = server.endpoint.stable
    other = 1 if stable == 2 else 2
    assert _put(h, header="X-Variant", routes={"b": other})[0] == 200
    for _ in range(20):
        assert h.post("/v2/models/tr/infer", body(),
                      headers={"x-variant": "b"})[1]["x-insitu-version"] == f"sk:{other}"
        assert h.post("/v2/models/tr/infer", body(),
                      headers={"x-variant": "a"})[1]["x-insitu-version"] == f"sk:{stable}"
    assert _put(h)[0] == 200
    h.close()


def test_bad_policies_are_refused_and_change_nothing(server: Server) -> None:
    h = Http(server.url)
    before = server.endpoint.describe()["traffic"]
    for traffic, text in [({"canary": 2, "percent": 150}, "canary percentage 150 is out of "
                                                           "range"),
                          ({"canary": 2, "percent": -1}, "out of range"),
                          ({"canary": 9, "percent": 5}, "has no version 9"),
                          ({"shadow": 2, "shadow_percent": 101}, "shadow percentage 101"),
                          ({"percent": 5}, "without a canary version"),
                          ({"routes": {"a": 1}}, "without the header"),
                          ({"canary": 2, "bogus": 1}, "unknown field(s) bogus")]:
        status, doc = _put(h, **traffic)
        assert status == 400 and text in doc["error"], (traffic, doc)  # type: ignore[index]
    assert server.endpoint.describe()["traffic"] == before
    with pytest.raises(UserError, match="out of range"):
        Traffic(canary=2, percent=100.5)
    h.close()
