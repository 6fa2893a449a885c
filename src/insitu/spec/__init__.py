"""PipelineSpec: the only thing that passes from authoring to execution.

Contract: a spec is plain JSON (``dict``), versioned by ``spec_version``, and valid
against ``pipelinespec.schema.json`` shipped beside this file. Every backend runs
from the spec alone; :func:`validate_spec` checks one read from disk.
"""

from insitu.spec._spec import SPEC_VERSION, load_spec, schema, validate_spec

__all__ = ["SPEC_VERSION", "load_spec", "schema", "validate_spec"]
