"""What runs inside an attempt's process: resolve inputs, call the step, store the output.

Every call into user code passes through :func:`run_attempt`'s error boundary,
which classifies the failure (the user's exception with their file and line,
out-of-memory, an unserialisable output, a missing input) and writes it as the
attempt's result.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import sys
import time
import traceback
from typing import Any

from insitu.artifacts import ArtifactStore, dump, load
from insitu.errors import NotFound, SerializationError
from insitu.tracking._log import TrialPruned

_PKG = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def resolve(arg: dict[str, Any], store: ArtifactStore, mat: str) -> Any:
    """Turn a concrete ref (``value`` / ``ref``+``path`` / ``list`` / ``dict``) into a value."""
    if "value" in arg:
        return arg["value"]
    if "list" in arg:
        return [resolve(a, store, mat) for a in arg["list"]]
    if "dict" in arg:
        return {k: resolve(a, store, mat) for k, a in arg["dict"].items()}
    value = load(arg["ref"], store, materialize_dir=mat)
    for k in arg.get("path", []):
        value = value[k]
    return value


def write_result(path: str, result: dict[str, Any]) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(result, f, default=repr)
    os.replace(tmp, path)


def _user_error(e: BaseException) -> dict[str, Any]:
    frames = traceback.extract_tb(e.__traceback__)
    user = [f for f in frames if not os.path.abspath(f.filename).startswith(_PKG)]
    last = user[-1] if user else (frames[-1] if frames else None)
    mro = [f"{c.__module__}.{c.__qualname__}" for c in type(e).__mro__]
    return {
        "kind": "user",
        "type": f"{type(e).__module__}.{type(e).__qualname__}".removeprefix("builtins."),
        "mro": mro,
        "message": str(e)[:4000],
        "file": last.filename if last else None,
        "line": last.lineno if last else None,
        "frames": [{"file": f.filename, "line": f.lineno, "function": f.name,
                    "code": f.line} for f in user[-8:]],
        "traceback": "".join(traceback.format_exception(e))[-8000:],
    }


def run_attempt(req: Any) -> None:
    """Run one attempt in the current (fresh, forked) process. Never returns normally."""
    code = 0
    try:
        gc.disable()  # a short-lived process: collecting would only copy pages
        os.setsid()
        for fd, path in ((1, req.stdout_path), (2, req.stderr_path)):
            f = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.dup2(f, fd)
            os.close(f)
        sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
        sys.stderr.reconfigure(line_buffering=True)  # type: ignore[union-attr]
        os.environ.update(req.env)
        os.environ["INSITU_RUN_ID"] = req.run_id
        os.environ["INSITU_TASK_ID"] = req.task_id
        os.environ["INSITU_ATTEMPT"] = str(req.attempt)
        os.environ["INSITU_NODE"] = req.node
        if not os.environ.get("INSITU_DATA_DIR"):  # a node with a data dir caches there
            os.environ.setdefault("INSITU_SHARD_CACHE", os.path.join(
                os.path.dirname(req.materialize_dir), "shard-cache", req.node))
        if req.gpu_ids:
            os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in req.gpu_ids)
        elif "CUDA_VISIBLE_DEVICES" not in req.env:
            os.environ["CUDA_VISIBLE_DEVICES"] = ""
        if req.memory_limit:
            resource.setrlimit(resource.RLIMIT_DATA, (req.memory_limit, req.memory_limit))
        result = _call(req)
        write_result(req.result_path, result)
    except BaseException:  # noqa: BLE001 - last resort: the parent sees no result
        traceback.print_exc()
        code = 70
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


_stores: dict[str, ArtifactStore] = {}


def artifact_store(url: str) -> ArtifactStore:
    """One store object per URL per process (the fork server makes it before forking)."""
    if url not in _stores:
        _stores[url] = ArtifactStore(url)
    return _stores[url]


def _call(req: Any) -> dict[str, Any]:
    from insitu.sdk._loader import load_function

    started = time.time()
    store = artifact_store(req.artifacts_url)
    if req.metrics_path:
        from insitu.tracking import _log

        _log.begin(req.metrics_path, req.artifacts_url, req.trial)
    try:
        fn = load_function(req.function)
    except BaseException as e:  # noqa: BLE001
        err = _user_error(e)
        err["kind"] = "import"
        return {"ok": False, "error": err, "started_at": started}
    try:
        kwargs = {k: resolve(v, store, req.materialize_dir) for k, v in req.args.items()}
    except NotFound as e:
        return {"ok": False, "started_at": started,
                "error": {"kind": "missing_input", "message": e.message, "hint": e.hint}}
    except MemoryError:
        return {"ok": False, "started_at": started,
                "error": {"kind": "oom", "message": "out of memory while loading inputs"}}
    try:
        value = fn(**kwargs)
    except MemoryError as e:
        err = _user_error(e)
        err["kind"] = "oom"
        del e
        return {"ok": False, "error": err, "started_at": started}
    except TrialPruned as e:
        return {"ok": False, "started_at": started,
                "error": {"kind": "pruned", "message": str(e)}}
    except BaseException as e:  # noqa: BLE001 - the error boundary around user code
        return {"ok": False, "error": _user_error(e), "started_at": started}
    try:
        out = dump(value, store, step=req.step)
    except SerializationError as e:
        return {"ok": False, "started_at": started,
                "error": {"kind": "serialization", "message": e.message, "hint": e.hint,
                          "type": type(value).__qualname__}}
    except MemoryError:
        return {"ok": False, "started_at": started,
                "error": {"kind": "oom", "message": "out of memory while storing the output"}}
    except OSError as e:
        return {"ok": False, "started_at": started,
                "error": {"kind": "storage", "message": f"could not store the output in "
                          f"{req.artifacts_url}: {e}",
                          "hint": "free space there or point INSITU_ARTIFACTS elsewhere, then "
                                  "`insitu resume` the run"}}
    return {"ok": True, "output": out, "started_at": started}
