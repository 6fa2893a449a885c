"""The read routes beyond a run's record: its steps, attempts, logs (a range, and live over
Server-Sent Events), ``explain`` and ``why``, metrics and params, artifacts; a project's
models, datasets and tuning studies; the cluster. Each reads its inputs, calls one domain
function (``_reads``, ``_logstream``, ``_artifacts``, ``_catalog``, ``_cluster``), and
returns what it returns; who may call it is decided in ``_access.ACCESS``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from insitu._config import Config, load_config
from insitu.server import _artifacts, _catalog, _cluster, _dataflow, _graph, _logstream, _reads
from insitu.server._access import API
from insitu.server._domain import _run
from insitu.server._routes import _store, _who, authorize

read_router = APIRouter(prefix=API, dependencies=[Depends(authorize)])
RUN = "/projects/{project}/runs/{run_id}"


def _config(request: Request) -> Config:
    """Where the engines write logs and artifacts: this server's INSITU_HOME."""
    cfg: Config | None = getattr(request.app.state, "config", None)
    if cfg is None:
        cfg = request.app.state.config = load_config()
    return cfg


class StepOut(BaseModel):
    id: str
    step: str
    state: str
    attempts: int
    node: str | None
    started_at: float | None
    ended_at: float | None
    error: dict[str, Any] | None
    cached_from: str | None
    map_index: int | None
    pending_reason: str | None


class AttemptOut(BaseModel):
    run_id: str
    task_id: str
    number: int
    state: str
    node: str | None
    pid: int | None
    started_at: float | None
    ended_at: float | None
    exit_code: int | None
    peak_memory: int | None
    cpu_time: float | None
    error: dict[str, Any] | None
    placement: dict[str, Any] | None
    limits: dict[str, Any] | None


class LogRangeOut(BaseModel):
    text: str
    offset: int
    next_offset: int
    eof: bool            # nothing more is written yet past next_offset
    attempt: int
    size: int            # the file's size when it was read
    ended: bool          # the attempt has ended: nothing more will be written


StepQuery = Query(default=None, max_length=300,
                  description="a task id (e.g. 'train' or 'evaluate[1]')")


@read_router.get(RUN + "/steps", response_model=list[StepOut],
                 summary="The run's steps (tasks; a map's items each)")
def steps(request: Request, project: str, run_id: str) -> list[dict[str, Any]]:
    return _reads.list_steps(_store(request), project, run_id)


@read_router.get(RUN + "/graph", summary="The run's step graph with task counts by state",
                 response_description="each step: the steps it takes inputs from ('after'), "
                                      "map or not and its items, what it asks for, and its "
                                      "tasks counted by state")
def graph(request: Request, project: str, run_id: str) -> dict[str, Any]:
    return _graph.graph(_store(request), project, run_id)


@read_router.get(RUN + "/data", summary="The bytes the run's steps read locally and moved",
                 response_description="in total and per step: bytes read, read locally "
                                      "and moved, and each link (source -> node) with "
                                      "its bytes")
def data(request: Request, project: str, run_id: str) -> dict[str, Any]:
    return _dataflow.run_data(_store(request), project, run_id)


@read_router.get(RUN + "/attempts", summary="Every attempt of the run, by start (a timeline)",
                 response_description="total, and the first `limit` attempts: task, number "
                                      "(2 or more: a retry), state, node, times, exit code")
def run_attempts(request: Request, project: str, run_id: str,
                 limit: int = Query(default=2000, ge=1, le=10000)) -> dict[str, Any]:
    return _reads.run_attempts(_store(request), project, run_id, limit)


@read_router.get(RUN + "/steps/{task_id}/attempts", response_model=list[AttemptOut],
                 summary="The attempts of one task, oldest first")
def attempts(request: Request, project: str, run_id: str, task_id: str
             ) -> list[dict[str, Any]]:
    return _reads.list_attempts(_store(request), project, run_id, task_id)


@read_router.get(RUN + "/logs", response_model=LogRangeOut,
                 summary="A byte range of one attempt's stdout or stderr")
def logs(request: Request, project: str, run_id: str,
         step: str = Query(max_length=300, description="a task id, e.g. 'evaluate[1]'"),
         attempt: int | None = Query(default=None, ge=1, le=2**31 - 1,
                                     description="from 1; default the latest"),
         stream: str = Query(default="stdout", pattern="^(stdout|stderr)$"),
         offset: int = Query(default=0, ge=0, le=2**62),
         limit: int = Query(default=2**20, ge=1, le=_reads.MAX_LOG_RANGE),
         rank: int = Query(default=0, ge=0, le=65535,
                           description="a distributed step's rank (default 0)")
         ) -> dict[str, Any]:
    """Read from ``offset`` up to ``limit`` bytes; ``next_offset`` is where the next read
    starts (a UTF-8 character cut by the limit is left for it). ``eof``: nothing more is
    written yet; ``ended``: nothing more will be."""
    return _reads.log_range(_store(request), _config(request), project, run_id, step=step,
                            attempt=attempt, stream=stream, offset=offset, limit=limit,
                            rank=rank)


@read_router.get(RUN + "/logs/stream", response_class=StreamingResponse,
                 summary="The run's logs as Server-Sent Events, until it ends",
                 responses={200: {"description": "events 'log' ({step, attempt, stream, "
                                                 "text}) and a last 'end' ({state})",
                                  "content": {"text/event-stream": {}}}})
def logs_stream(request: Request, project: str, run_id: str,
                step: str | None = StepQuery) -> StreamingResponse:
    """Lines as they are written (every step's, or ``step``'s: a task, or a map's items),
    then ``end`` once the run has ended and every line was sent. A comment is sent when
    there is nothing to say, to keep the connection open."""
    store = _store(request)
    run = _run(store, project, run_id)
    _logstream.check_step(store, run, step)
    return StreamingResponse(_logstream.stream(store, _config(request), run, step),
                             media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@read_router.get(RUN + "/explain", summary="Why the run (or a step) failed, with the fix",
                 response_description="the facts `insitu explain` prints: cause, where "
                                      "(file:line), frames, fix, stderr's last lines, the "
                                      "other failed steps; 'failed' false and a 'message' "
                                      "when nothing failed")
def explain(request: Request, project: str, run_id: str, step: str | None = StepQuery
            ) -> dict[str, Any]:
    return _reads.explain(_store(request), _config(request), project, run_id, step)


@read_router.get(RUN + "/why", summary="Why the run's steps (or a step) wait",
                 response_description="for each waiting step: the scheduler's reasons, the "
                                      "inputs it waits for, or what else holds it")
def why(request: Request, project: str, run_id: str, step: str | None = StepQuery
        ) -> dict[str, Any]:
    return _reads.why(_store(request), project, run_id, step)


@read_router.get(RUN + "/metrics", summary="The metrics and params the run's steps logged")
def metrics(request: Request, project: str, run_id: str,
            name: str | None = Query(default=None, max_length=200)) -> dict[str, Any]:
    return _reads.metrics(_store(request), project, run_id, name)


# -- artifacts ------------------------------------------------------------------------------

Digest = Path(pattern="^[0-9a-f]{64}$", description="the artifact's sha256 (64 hex digits)")


@read_router.get(RUN + "/artifacts", summary="The stored values of the run",
                 response_description="each step's output (a map's items one by one) and "
                                      "what steps logged: digest, serializer, type, size, "
                                      "content type")
def artifacts(request: Request, project: str, run_id: str) -> list[dict[str, Any]]:
    return _artifacts.list_artifacts(_store(request), project, run_id)


@read_router.get(RUN + "/artifacts/{digest}", response_class=Response,
                 summary="The bytes of one of the run's artifacts",
                 responses={200: {"description": "the bytes (JSON for an inline value, a tar "
                                                 "for a folder)",
                                  "content": {"application/octet-stream": {}}}})
def artifact(request: Request, project: str, run_id: str, digest: str = Digest) -> Response:
    data, ctype, name = _artifacts.download(_store(request), _config(request), project,
                                            run_id, digest)
    quoted = name.replace("\\", "_").replace('"', "_")
    return Response(data, media_type=ctype,
                    headers={"Content-Disposition": f'attachment; filename="{quoted}"'})


@read_router.get(RUN + "/artifacts/{digest}/preview", summary="A look at one artifact",
                 response_description="preview 'table' (columns, first rows), 'json', "
                                      "'text', 'image' (content type), 'array', 'files' or "
                                      "'none' (pickled objects are never loaded)")
def artifact_preview(request: Request, project: str, run_id: str, digest: str = Digest
                     ) -> dict[str, Any]:
    return _artifacts.preview(_store(request), _config(request), project, run_id, digest)


# -- models, datasets, studies --------------------------------------------------------------

NAME = Path(max_length=200)


@read_router.get("/projects/{project}/models", summary="The project's models")
def models(request: Request, project: str) -> list[dict[str, Any]]:
    return _catalog.list_models(_store(request), project)


@read_router.get("/projects/{project}/models/{name}",
                 summary="A model with its versions, aliases and lineage")
def model(request: Request, project: str, name: str = NAME) -> dict[str, Any]:
    return _catalog.get_model(_store(request), project, name)


@read_router.get("/projects/{project}/models/{name}/versions/{version}",
                 summary="One version of a model: its run, step, aliases and lineage")
def model_version(request: Request, project: str, name: str = NAME,
                  version: int = Path(ge=1, le=2**31 - 1)) -> dict[str, Any]:
    return _catalog.get_model_version(_store(request), project, name, version)


@read_router.get("/projects/{project}/datasets", summary="The project's datasets")
def datasets(request: Request, project: str) -> list[dict[str, Any]]:
    return _catalog.list_datasets(_store(request), project)


@read_router.get("/projects/{project}/datasets/{name}",
                 summary="A dataset with every shard and where its replicas live")
def dataset(request: Request, project: str, name: str = NAME) -> dict[str, Any]:
    return _catalog.get_dataset(_store(request), project, name)


@read_router.get("/projects/{project}/studies", summary="The project's tuning studies")
def studies(request: Request, project: str) -> list[dict[str, Any]]:
    return _catalog.list_studies(_store(request), project)


@read_router.get(RUN + "/studies/{step}",
                 summary="A tuning study (RUN/STEP): best trial and every trial")
def study(request: Request, project: str, run_id: str, step: str = Path(max_length=200)
          ) -> dict[str, Any]:
    return _catalog.get_study(_store(request), project, run_id, step)


# -- the cluster ----------------------------------------------------------------------------


@read_router.get("/cluster", summary="Nodes, allocations and pending work with its reasons",
                 response_description="nodes with capacity, allocated and free (every "
                                      "project's work counts); allocations and pending work "
                                      "of the projects the caller sees")
def cluster(request: Request) -> dict[str, Any]:
    return _cluster.cluster(_store(request), _who(request))
