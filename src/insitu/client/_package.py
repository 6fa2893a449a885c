"""The code package a submitted run carries: the user's own Python files, so the server runs
exactly the code that was run here.

Its root is the pipeline file's folder (the current folder for a pipeline defined in a
notebook). It holds the files of the spec's step functions and of every module under the
root that the pipeline imported, plus the modules those files import (read from their source,
so an import inside a step function counts too); never site-packages, the virtual
environment, or insitu itself. The zip is deterministic: sorted names, timestamps
1980-01-01, mode 0644, so the same files give the same bytes and the same id,
``sha256:<hex>``. The spec's function references into the package are rewritten to paths
relative to the root (``pipeline.py``, ``lib/feats.py``).
"""

from __future__ import annotations

import ast
import copy
import hashlib
import io
import os
import sys
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from insitu._units import format_bytes
from insitu.errors import UserError

if TYPE_CHECKING:
    from insitu.client._http import Client

MAX_PACKAGE = 50 * 1024 * 1024  # the server's default limit (insitu server --max-package)
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)
_SKIP_PARTS = {"site-packages", "dist-packages", "__pycache__", ".git", "node_modules"}


@dataclass(frozen=True)
class Package:
    """A built code package: its zip bytes, digest (hex), root and member paths."""

    data: bytes
    digest: str
    root: Path
    files: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        return f"sha256:{self.digest}"

    @property
    def size(self) -> int:
        return len(self.data)


def max_package() -> int:
    """The size a package may have before it is refused here (``INSITU_MAX_PACKAGE``, in
    bytes, else the server's default); the server applies its own limit too."""
    raw = os.environ.get("INSITU_MAX_PACKAGE")
    if not raw:
        return MAX_PACKAGE
    try:
        value = int(raw)
    except ValueError:
        raise UserError(f"INSITU_MAX_PACKAGE={raw!r} is not a number of bytes",
                        hint="e.g. INSITU_MAX_PACKAGE=104857600 for 100 MiB") from None
    if value <= 0:
        raise UserError(f"INSITU_MAX_PACKAGE={raw!r} must be above 0",
                        hint="e.g. INSITU_MAX_PACKAGE=104857600 for 100 MiB")
    return value


def _excluded_roots() -> list[Path]:
    here = Path(__file__).resolve().parents[1]  # insitu itself
    roots = {Path(sys.prefix), Path(sys.base_prefix), Path(sys.exec_prefix), here}
    return [r.resolve() for r in roots]


def _inside(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
    except ValueError:
        return False
    return True


class _Collector:
    """The user's files under ``root``, found from references, modules and imports."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.excluded = [r for r in _excluded_roots() if not _inside(root, r)]
        self.files: set[Path] = set()

    def wanted(self, path: Path) -> bool:
        if not _inside(path, self.root) or path.suffix != ".py" or not path.is_file():
            return False
        rel = path.relative_to(self.root).parts
        if any(p in _SKIP_PARTS or p.startswith(".") for p in rel):
            return False
        return not any(_inside(path, r) for r in self.excluded)

    def add(self, path: str | os.PathLike[str] | None) -> bool:
        if not path:
            return False
        p = Path(os.path.abspath(path)).resolve()
        if p in self.files or not self.wanted(p):
            return p in self.files
        self.files.add(p)
        for parent in p.parents:  # the packages it sits in come along
            if parent == self.root or not _inside(parent, self.root):
                break
            init = parent / "__init__.py"
            if init.is_file():
                self.files.add(init)
        return True

    def module_file(self, dotted: str) -> Path | None:
        base = self.root.joinpath(*dotted.split("."))
        for cand in (base.with_suffix(".py"), base / "__init__.py"):
            if cand.is_file():
                return cand
        return None

    def follow_imports(self) -> None:
        todo = list(self.files)
        while todo:
            path = todo.pop()
            for name in _imported_names(path, self.root):
                f = self.module_file(name)
                if f is not None and f.resolve() not in self.files and self.add(f):
                    todo.append(f.resolve())


def _imported_names(path: Path, root: Path) -> set[str]:
    """Dotted module names ``path`` imports (at any depth of its code), relative imports
    made absolute against ``root``; a ``from a import b`` names ``a`` and ``a.b``."""
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (SyntaxError, ValueError, OSError):
        return set()
    rel = path.relative_to(root).with_suffix("").parts
    package = list(rel[:-1])  # the package a relative import starts from
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                parts = a.name.split(".")
                names.update(".".join(parts[: i + 1]) for i in range(len(parts)))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                keep = len(package) - (node.level - 1)
                if keep < 0:
                    continue
                base = package[:keep] + (node.module.split(".") if node.module else [])
            else:
                base = (node.module or "").split(".")
            if not base or base == [""]:
                base = []
            for i in range(len(base)):
                names.add(".".join(base[: i + 1]))
            for a in node.names:
                if a.name != "*":
                    names.add(".".join([*base, a.name]))
    return {n for n in names if n}


def _refs(spec: dict[str, Any]) -> Iterable[tuple[str | None, dict[str, Any]]]:
    """(step id or None for the pipeline itself, function reference) of every function."""
    if spec.get("source"):
        yield None, spec["source"]
    for s in spec.get("steps", []):
        if s.get("function"):
            yield s["id"], s["function"]


def package_root(spec: dict[str, Any]) -> Path:
    """The pipeline file's folder, or the current folder for a notebook's pipeline."""
    src = spec.get("source") or {}
    file = src.get("file")
    if file and not src.get("pickled") and os.path.isfile(file):
        return Path(os.path.abspath(file)).resolve().parent
    return Path.cwd().resolve()


def build_package(spec: dict[str, Any], *,
                  modules: Mapping[str, ModuleType | None] | None = None,
                  limit: int | None = None) -> tuple[dict[str, Any], Package | None]:
    """The spec to submit (its references into the package made relative) and the package
    (None when no function needs one: every step travels by value or is importable by
    module on the server)."""
    root = package_root(spec)
    col = _Collector(root)
    problems: list[str] = []
    for sid, ref in _refs(spec):
        if ref.get("pickled") or not ref.get("file") or str(ref["file"]).startswith("<"):
            continue
        if not col.add(ref["file"]) and not ref.get("module"):
            what = f"step '{sid}'" if sid else f"pipeline '{spec.get('name')}'"
            problems.append(f"{what}: {ref.get('qualname')} is in {ref['file']}, outside "
                            f"the pipeline's folder {root}")
    if problems:
        raise UserError("the code a run needs must lie under the pipeline file's folder, "
                        "which is sent to the server: " + "; ".join(problems),
                        hint=f"move those files under {root} (or install them as a package "
                             "on the server)")
    for mod in list((sys.modules if modules is None else modules).values()):
        file = getattr(mod, "__file__", None)
        if file:
            col.add(file)
    if not col.files:
        return copy.deepcopy(spec), None
    col.follow_imports()
    out = copy.deepcopy(spec)
    for _, ref in _refs(out):
        file = ref.get("file")
        if ref.get("pickled") or not file or str(file).startswith("<"):
            continue
        p = Path(os.path.abspath(file)).resolve()
        if p in col.files:
            ref["file"] = p.relative_to(root).as_posix()
        else:
            ref["file"] = None  # a laptop path means nothing there: it imports the module
    pkg = _zip(root, sorted(col.files), limit=max_package() if limit is None else limit,
               pipeline=str(spec.get("name")))
    return out, pkg


def _zip(root: Path, files: list[Path], *, limit: int, pipeline: str) -> Package:
    sizes = {f: f.stat().st_size for f in files}
    names = sorted((f.relative_to(root).as_posix(), f) for f in files)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, f in names:
            info = zipfile.ZipInfo(name, date_time=_FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # unix: the same bytes on every machine
            info.external_attr = (0o100644 & 0xFFFF) << 16
            z.writestr(info, f.read_bytes(), compresslevel=6)
    data = buf.getvalue()
    if len(data) > limit:
        biggest = sorted(sizes.items(), key=lambda kv: -kv[1])[:3]
        raise UserError(
            f"the code package of pipeline '{pipeline}' is {format_bytes(len(data))} "
            f"({len(files)} files under {root}), over the limit of {format_bytes(limit)}",
            hint="only code belongs there; the largest files are "
                 + ", ".join(f"{f.relative_to(root).as_posix()} ({format_bytes(n)})"
                             for f, n in biggest)
                 + ": move data out of the pipeline's folder (read it from a dataset), or "
                   "raise the limit (INSITU_MAX_PACKAGE here, --max-package on the server)")
    return Package(data=data, digest=hashlib.sha256(data).hexdigest(), root=root,
                   files=[n for n, _ in names])


def send_code(client: Client, spec: dict[str, Any], *,
              modules: Mapping[str, ModuleType | None] | None = None
              ) -> tuple[dict[str, Any], Package | None]:
    """Package the spec's code and upload the package if the server lacks it: the spec to
    send (its references relative to the package) and the package (None when none is
    needed). A run and a schedule send their code alike."""
    sent, pkg = build_package(spec, modules=modules)
    if pkg is not None:
        upload(client, pkg)
    return sent, pkg


def upload(client: Client, pkg: Package) -> bool:
    """Send ``pkg`` to the server's project unless it has it already; True if sent."""
    from insitu.errors import NotFound

    path = client.in_project("packages", pkg.digest)
    try:
        client.get(path)
        return False
    except NotFound:
        pass
    client.request("PUT", path, content=pkg.data,
                   headers={"Content-Type": "application/zip"})
    return True
