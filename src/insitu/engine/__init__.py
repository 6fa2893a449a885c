"""The engine: drives a run from its spec, persisting every state change first.

See ``_engine.py`` for the rules it keeps and ``_outcome.py`` for how an
attempt's end is classified and retried.
"""

from insitu.engine._engine import Engine, RunLoop, engine_alive, resolve_resources
from insitu.engine._params import bind_params, parse_cli_params

__all__ = ["Engine", "RunLoop", "bind_params", "engine_alive", "parse_cli_params",
           "resolve_resources"]
