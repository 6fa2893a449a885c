"""Notebook servers: each a real JupyterLab (jupyter-server) process that the platform server
starts, supervises and stops, with its resources reserved through the scheduler on the
server's node, its memory limit enforced on its kernels, its own virtual environment and a
home folder that survives stops.

Owns the notebooks' lifecycle (:class:`NotebookManager`): placement, the process, the
environment and home, the kernel memory watch and idle culling. It may import what the
server may (store, scheduler, executor, engine, errors, units); the server (its routes and
the proxy) and the CLI import it.
"""

from __future__ import annotations

from insitu.notebooks._manager import NotebookManager, view

__all__ = ["NotebookManager", "view"]
