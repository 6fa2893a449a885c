"""A notebook's own virtual environment, layered over the server's Python.

``python -m venv --without-pip`` makes it (a second or less); a ``.pth`` file in it adds
the server environment's site-packages after its own, so everything the server has
(jupyter-server, insitu, pip itself) is importable, and ``pip install`` in the notebook
(``%pip install`` runs ``python -m pip`` of the kernel's Python) installs into the
notebook's environment only: another notebook never sees it.
"""

from __future__ import annotations

import site
import subprocess
import sys
import sysconfig
from pathlib import Path

PTH = "_insitu_base.pth"


def _base_dirs() -> list[str]:
    """The server environment's site-packages (and purelib, if apart)."""
    dirs = [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    dirs += [d for d in site.getsitepackages() if d.startswith(sys.prefix)]
    return list(dict.fromkeys(dirs))


def ensure_env(path: Path) -> Path:
    """The Python of the environment at ``path``, made first if it is not there."""
    python = path / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)],
                       check=True, capture_output=True, timeout=120)
    out = subprocess.run([str(python), "-c",
                          "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         check=True, capture_output=True, text=True, timeout=60)
    own = Path(out.stdout.strip())
    lines = "".join(f"import site; site.addsitedir({d!r})\n" for d in _base_dirs())
    pth = own / PTH
    if not pth.exists() or pth.read_text() != lines:  # the server's Python may have moved
        pth.write_text(lines)
    return python
