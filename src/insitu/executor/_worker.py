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
import re
import site
import sys
import sysconfig
import time
import traceback
from typing import Any

from insitu.artifacts import ArtifactStore, dump, load
from insitu.artifacts._store import artifact_store
from insitu.errors import NotFound, SerializationError, TrainingUnavailable
from insitu.tracking import _log
from insitu.train import _context as _train  # imported once by the fork server

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


_MAX_FRAMES = 30


def _lib_roots() -> tuple[str, ...]:
    roots = {sysconfig.get_paths()[k] for k in ("purelib", "platlib")}
    try:
        roots.update(site.getsitepackages())
        roots.add(site.getusersitepackages())
    except AttributeError:  # a virtualenv's old site module
        pass
    return tuple(os.path.join(os.path.realpath(r), "") for r in roots if r)


def _std_roots() -> tuple[str, ...]:
    roots = {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib")}
    return tuple(os.path.join(os.path.realpath(r), "") for r in roots if r)


def where(filename: str) -> str:
    """Whose code a frame is in: "insitu", "library" (an installed package), "stdlib"
    or "user" (everything else: the user's own files)."""
    if filename.startswith("<"):  # <frozen importlib._bootstrap>, <string>, <stdin>
        return "stdlib" if filename.startswith("<frozen") else "user"
    path = os.path.realpath(filename)
    if path.startswith(os.path.join(_PKG, "")):
        return "insitu"
    if path.startswith(_lib_roots()) or f"{os.sep}site-packages{os.sep}" in path \
            or f"{os.sep}dist-packages{os.sep}" in path:
        return "library"
    if path.startswith(_std_roots()):
        return "stdlib"
    return "user"


_ALLOC = re.compile(r"Unable to allocate ([0-9.]+) ([KMGTPE]?i?B)")
_ALLOC_UNITS = {"B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3, "TiB": 1024**4,
                "PiB": 1024**5, "EiB": 1024**6}


def failed_allocation(message: str) -> int | None:
    """The size a MemoryError says it could not allocate (numpy: "Unable to allocate 2.00
    GiB for an array ..."), or None."""
    m = _ALLOC.search(message)
    if not m or m.group(2) not in _ALLOC_UNITS:
        return None
    return int(float(m.group(1)) * _ALLOC_UNITS[m.group(2)])


def _user_error(e: BaseException) -> dict[str, Any]:
    """The error dict of an exception from user code: ``frames`` is the whole stack
    (innermost last), each frame marked with :func:`where`; ``file``/``line`` name the
    innermost frame in the user's own files (else the innermost frame)."""
    tb = traceback.extract_tb(e.__traceback__)
    frames = [{"file": f.filename, "line": f.lineno, "function": f.name, "code": f.line,
               "where": where(f.filename)} for f in tb]
    user = [f for f in frames if f["where"] == "user"]
    last = user[-1] if user else (frames[-1] if frames else None)
    mro = [f"{c.__module__}.{c.__qualname__}" for c in type(e).__mro__]
    err: dict[str, Any] = {
        "kind": "user",
        "type": f"{type(e).__module__}.{type(e).__qualname__}".removeprefix("builtins."),
        "mro": mro,
        "message": str(e)[:4000],
        "file": last["file"] if last else None,
        "line": last["line"] if last else None,
        "frames": frames[-_MAX_FRAMES:],
        "traceback": "".join(traceback.format_exception(e))[-8000:],
    }
    if isinstance(e, MemoryError):
        err["failed_allocation"] = failed_allocation(str(e))
    return err


def _report(e: BaseException) -> None:
    """Write the exception with its traceback to the attempt's stderr log (from the first
    frame that is not insitu's own error boundary)."""
    try:
        tb = e.__traceback__
        while tb is not None and where(tb.tb_frame.f_code.co_filename) == "insitu":
            tb = tb.tb_next
        te = traceback.TracebackException(type(e), e, tb or e.__traceback__)
        sys.stderr.write("".join(te.format()))
        sys.stderr.flush()
    except Exception:  # noqa: BLE001 - a closed or broken stderr must not hide the result
        pass


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
        if req.rank is not None:  # a rank of a distributed step: its line in the journal
            os.environ["INSITU_RANK"] = str(req.rank)
        if req.gpu_ids:
            os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in req.gpu_ids)
        elif "CUDA_VISIBLE_DEVICES" not in req.env:
            os.environ["CUDA_VISIBLE_DEVICES"] = ""
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


def _call(req: Any) -> dict[str, Any]:
    from insitu.sdk._loader import load_function

    started = time.time()
    store = artifact_store(req.artifacts_url)
    if req.metrics_path:
        _log.begin(req.metrics_path, req.artifacts_url, req.trial)
    _train.begin(run_id=req.run_id, task_id=req.task_id, step_id=req.step,
                 attempt=req.attempt, artifacts_url=req.artifacts_url)
    rank = getattr(req, "rank", None)
    try:
        fn = load_function(req.function)
    except BaseException as e:  # noqa: BLE001
        _report(e)
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
        if rank is not None:
            try:
                _train.start()  # the process group, before user code runs
            except TrainingUnavailable as e:
                return {"ok": False, "started_at": started,
                        "error": {"kind": "import", "message": e.message, "hint": e.hint}}
        value = fn(**kwargs)
        if rank is not None:
            _train.stop()
            if rank != 0:  # the step's result is rank 0's
                return {"ok": True, "output": None, "started_at": started}
    except MemoryError as e:
        _report(e)
        err = _user_error(e)
        err["kind"] = "oom"
        del e
        return {"ok": False, "error": err, "started_at": started}
    except _log.TrialPruned as e:
        return {"ok": False, "started_at": started,
                "error": {"kind": "pruned", "message": str(e)}}
    except BaseException as e:  # noqa: BLE001 - the error boundary around user code
        _report(e)
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
