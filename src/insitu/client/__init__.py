"""Using an ``insitu server`` from a laptop: the credentials (``insitu login``), the HTTP
client that turns the API's problem documents into insitu's own errors, the code package a
submitted run carries, and runs on the server as Python objects.

Which server, if any: ``INSITU_SERVER`` (with ``INSITU_TOKEN``) when set, else what
``insitu login`` stored in ``INSITU_HOME/credentials.toml``; with neither, every command works
locally as before. ``INSITU_SERVER=""`` (set, empty) works locally even when logged in.
Nothing here imports the server.
"""

from insitu.client._credentials import (
    Credentials,
    credentials_path,
    forget,
    project_override,
    remember,
    resolve,
)
from insitu.client._http import Client, Unreachable, connect
from insitu.client._package import MAX_PACKAGE, Package, build_package, send_code, upload
from insitu.client._runs import RemoteRun, submit, wait

__all__ = [
    "MAX_PACKAGE",
    "Client",
    "Credentials",
    "Package",
    "RemoteRun",
    "Unreachable",
    "build_package",
    "connect",
    "credentials_path",
    "forget",
    "project_override",
    "remember",
    "resolve",
    "send_code",
    "submit",
    "upload",
    "wait",
]
