"""Code packages: a run's own files, as a zip named by the SHA-256 of its bytes.

The server checks a package when it is uploaded (its digest, its size, that every member
stays inside the package root) and keeps it in the database, so every server sharing the
database has it. An engine unpacks a package once per machine into a content-addressed
cache folder (extracted beside it, then renamed into place: never half there).
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import stat
import tempfile
import time
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

from insitu._units import format_bytes
from insitu.errors import NotFound, TooLarge, UserError
from insitu.store import PackageRecord, Store

DEFAULT_MAX_PACKAGE = 50 * 1024**2
_HEX = re.compile(r"^[0-9a-f]{64}$")
_SHRINK = ("package only the pipeline's own code: move data files, model weights and "
           "virtual environments out of the pipeline's folder (read data through "
           "insitu datasets or artifacts), or ask the operator to raise the server's "
           "--max-package")


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def parse_digest(text: str) -> str:
    """``sha256:<hex>`` from the bare hex of a URL (or from a full id)."""
    hexpart = text.removeprefix("sha256:")
    if not _HEX.match(hexpart):
        raise UserError(f"{text!r} is not a package digest",
                        hint="give the 64 lowercase hex digits of the zip's SHA-256 "
                             "(sha256sum package.zip)")
    return "sha256:" + hexpart


def check_size(size: int, limit: int) -> None:
    if size > limit:
        raise TooLarge(f"the code package is {format_bytes(size)} ({size} bytes); this server "
                       f"accepts packages up to {format_bytes(limit)} ({limit} bytes)",
                       size=size, limit=limit, hint=_SHRINK)


def member_paths(data: bytes, limit: int) -> list[str]:
    """The files of a package zip, checked: a zip, every member a relative path that stays
    inside the root, no links, and not more than ``8 * limit`` bytes unpacked."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError) as e:
        raise UserError(f"the code package is not a zip file ({e})",
                        hint="send the package the client built (a zip of the pipeline's "
                             "files)") from None
    files: list[str] = []
    total = 0
    with zf:
        for info in zf.infolist():
            name = info.filename
            bad = _bad_member(name)
            if bad:
                raise UserError(f"the code package's member {name!r} {bad}",
                                hint="members must be paths relative to the package root, "
                                     "without '..', and regular files or folders")
            if stat.S_ISLNK(info.external_attr >> 16):
                raise UserError(f"the code package's member {name!r} is a symbolic link",
                                hint="package the file the link points at instead")
            if info.is_dir():
                continue
            total += info.file_size
            files.append(name)
    if total > 8 * limit:
        raise TooLarge(f"the code package unpacks to {format_bytes(total)}, more than this "
                       f"server accepts ({format_bytes(8 * limit)})", size=total,
                       limit=8 * limit, hint=_SHRINK)
    if len(set(files)) != len(files):
        raise UserError("the code package holds the same path twice",
                        hint="build the package again with the insitu client")
    return sorted(files)


def _bad_member(name: str) -> str | None:
    if not name or "\x00" in name:
        return "has an empty name or a NUL character"
    if "\\" in name:
        return "contains a backslash"
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return "is an absolute path"
    if ".." in PurePosixPath(name).parts:
        return "leaves the package root ('..')"
    return None


def put_package(store: Store, project: str, digest_text: str, data: bytes, *,
                limit: int) -> tuple[dict[str, Any], bool]:
    """Check and keep a package; return its description and whether it is new."""
    digest = parse_digest(digest_text)
    check_size(len(data), limit)
    actual = digest_of(data)
    if actual != digest:
        raise UserError(f"the code package's content has digest {actual}, not the {digest} "
                        "in the URL", hint="send the bytes whose SHA-256 is in the URL (was "
                                           "the upload cut short or changed on the way?)")
    found = store.select(PackageRecord, digest=digest)
    if found:
        return describe(found[0]), False
    files = member_paths(data, limit)
    rec = PackageRecord(digest=digest, project=project, size=len(data), files=files,
                        created_at=time.time(), data=data)
    store.put(rec)
    return describe(rec), True


def describe(rec: PackageRecord) -> dict[str, Any]:
    return {"digest": rec.digest, "size": rec.size, "files": list(rec.files)}


def get_package(store: Store, digest_text: str) -> PackageRecord:
    digest = parse_digest(digest_text)
    found = store.select(PackageRecord, digest=digest)
    if not found:
        raise NotFound(f"no code package {digest}",
                       hint="upload it first: PUT /api/v1/projects/PROJECT/packages/DIGEST "
                            "(the insitu client does this when it submits)")
    return found[0]


def unpack(store: Store, digest: str, cache: Path) -> Path:
    """The folder holding package ``digest``'s files on this machine (unpacked from the
    database the first time)."""
    final = cache / digest.removeprefix("sha256:")
    if final.is_dir():
        return final
    rec = get_package(store, digest)
    if digest_of(rec.data) != rec.digest:
        raise UserError(f"the stored code package {digest} is damaged (its bytes have "
                        "another digest)", hint="upload the package again")
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name[:12]}-", dir=cache))
    try:
        with zipfile.ZipFile(io.BytesIO(rec.data)) as zf:
            for name in member_paths(rec.data, 2**62):  # checked when it was uploaded
                target = tmp / name
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(name) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst)
        try:
            os.rename(tmp, final)
        except OSError:  # another engine unpacked it meanwhile
            if not final.is_dir():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


__all__ = ["DEFAULT_MAX_PACKAGE", "check_size", "digest_of", "get_package", "member_paths",
           "parse_digest", "put_package", "unpack"]
