"""Loading user code: a pipeline file (``FILE[:PIPELINE]``) or a module, and step functions
by reference from a spec (used by workers)."""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import os
import sys
import traceback
import types
from pathlib import Path
from typing import Any

from insitu.errors import PipelineLoadError, UserError

_loaded: dict[str, types.ModuleType] = {}


def module_name_for(path: str) -> str:
    """The synthetic module name under which a pipeline file is imported."""
    p = os.path.abspath(path)
    stem = Path(p).stem.replace("-", "_").replace(".", "_")
    return f"_insitu_user_{stem}_{hashlib.sha1(p.encode()).hexdigest()[:8]}"


def import_file(path: str) -> types.ModuleType:
    """Import a Python file as a module (once per process); errors name the file and line."""
    p = os.path.abspath(path)
    if p in _loaded:
        return _loaded[p]
    if not os.path.exists(p):
        raise PipelineLoadError(f"pipeline file {path} does not exist",
                                hint="check the path (a file such as pipeline.py, or "
                                     "package.module)")
    name = module_name_for(p)
    spec = importlib.util.spec_from_file_location(name, p)
    if spec is None or spec.loader is None:
        raise PipelineLoadError(f"{path} is not a Python file", hint="pass a .py file")
    mod = importlib.util.module_from_spec(spec)
    folder = os.path.dirname(p)
    if folder not in sys.path:
        sys.path.insert(0, folder)  # so the file can import its siblings
    sys.modules[name] = mod
    try:
        spec.loader.exec_module(mod)
    except SyntaxError as e:
        del sys.modules[name]
        raise PipelineLoadError(f"{e.filename}:{e.lineno}: syntax error: {e.msg}",
                                hint="fix the syntax error, then run again") from None
    except UserError as e:  # insitu refused something in the file: it names the line
        del sys.modules[name]
        raise PipelineLoadError(f"{p} failed to import: {e.message}", hint=e.hint) from None
    except Exception as e:
        del sys.modules[name]
        frames = [f for f in traceback.extract_tb(e.__traceback__)
                  if "importlib" not in f.filename]
        pkg = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
        frames = [f for f in frames if not os.path.abspath(f.filename).startswith(pkg)] \
            or frames
        where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else p
        hint = "fix the error at that line, then run again"
        if isinstance(e, ModuleNotFoundError):
            hint = f"install the missing module (pip install {e.name}) or fix the import"
        raise PipelineLoadError(
            f"{p} failed to import: {type(e).__name__}: {e} (at {where})", hint=hint) from None
    _loaded[p] = mod
    return mod


def import_target(target: str) -> types.ModuleType:
    """``target`` is a file path or a dotted module name."""
    if target.endswith(".py") or os.sep in target or os.path.exists(target):
        return import_file(target)
    try:
        return importlib.import_module(target)
    except ModuleNotFoundError as e:
        if e.name and target.startswith(e.name):
            raise PipelineLoadError(f"no pipeline file or module named {target!r}",
                                    hint="give the path of a .py file") from None
        raise PipelineLoadError(f"module {target} failed to import: {e}") from None
    except Exception as e:
        raise PipelineLoadError(f"module {target} failed to import: {type(e).__name__}: {e}"
                                ) from None


def load_pipeline(ref: str) -> Any:
    """Load ``FILE[:PIPELINE]`` (or ``module[:PIPELINE]``) and return the Pipeline object."""
    from insitu.sdk._pipeline import Pipeline

    target, _, name = ref.partition(":")
    if len(target) == 1 and name and os.sep in name:  # a Windows drive letter
        target, name = ref, ""
    mod = import_target(target)
    found = {obj.name: obj for obj in vars(mod).values() if isinstance(obj, Pipeline)}
    if name:
        if name in found:
            return found[name]
        attr = getattr(mod, name, None)
        if isinstance(attr, Pipeline):
            return attr
        close = difflib.get_close_matches(name, list(found), n=1)
        hint = (f"did you mean `{target}:{close[0]}`?" if close else
                f"pipelines in {target}: {', '.join(sorted(found)) or 'none'}")
        raise PipelineLoadError(f"{target} has no pipeline named {name!r}", hint=hint)
    if not found:
        raise PipelineLoadError(
            f"{target} defines no pipeline",
            hint="decorate the function that wires your steps with @insitu.pipeline")
    if len(found) > 1:
        names = sorted(found)
        raise PipelineLoadError(
            f"{target} defines several pipelines ({', '.join(names)}) and none was named",
            hint=f"choose one, e.g. `insitu run {target}:{names[0]}`")
    return next(iter(found.values()))


_unpickled: dict[str, Any] = {}


def load_function(fn_ref: dict[str, Any]) -> Any:
    """The plain function a spec's ``function`` entry points at: imported by module or
    file, or unpickled when it travelled by value (a notebook cell, ``python -c``, stdin)."""
    if fn_ref.get("pickled"):
        return _from_value(fn_ref)
    if fn_ref.get("module"):
        try:
            mod = importlib.import_module(fn_ref["module"])
        except ImportError:
            if not fn_ref.get("file"):
                raise
            mod = import_file(fn_ref["file"])
    else:
        mod = import_file(fn_ref["file"])
    obj: Any = mod
    for part in fn_ref["qualname"].split("."):
        obj = getattr(obj, part)
    return getattr(obj, "fn", obj)


def _from_value(fn_ref: dict[str, Any]) -> Any:
    data = fn_ref["pickled"]
    if data in _unpickled:
        return _unpickled[data]
    import base64

    import cloudpickle

    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    made = fn_ref.get("python") or here
    try:
        fn = cloudpickle.loads(base64.b64decode(data))
    except Exception as e:
        hint = "install the missing module on this node (pip install ...)" \
            if isinstance(e, ImportError) else "run the pipeline again from where it was defined"
        if made != here:
            hint = (f"the step was defined under Python {made} and this worker runs Python "
                    f"{here}: use the same Python version on both")
        raise PipelineLoadError(
            f"step function {fn_ref.get('qualname')} (defined in a notebook or interactive "
            f"session) cannot be loaded here: {type(e).__name__}: {e}", hint=hint) from None
    fn = getattr(fn, "fn", fn)
    _unpickled[data] = fn
    return fn
