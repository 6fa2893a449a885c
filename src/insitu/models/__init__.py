"""The model registry: named models, numbered versions with lineage, and aliases.

A version points at the output of one step of one run (kept by content hash in the
artifact store) and records where it came from: the run, step, parameters, the step's
code fingerprint and the content of its inputs. Aliases such as ``champion`` move
atomically from one version to another. ``load("fraud@champion")``, ``load("fraud:3")``
or ``load("fraud")`` (the latest version) returns the object.
"""

from insitu.models._registry import (
                                     ModelVersion,
                                     delete_alias,
                                     delete_version,
                                     get_version,
                                     list_models,
                                     list_versions,
                                     load,
                                     register,
                                     set_alias,
)

__all__ = ["ModelVersion", "delete_alias", "delete_version", "get_version", "list_models",
           "list_versions", "load", "register", "set_alias"]
