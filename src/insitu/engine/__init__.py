"""The engine: drives a run from its spec, persisting every state change first.

``_loop.py`` holds the run loop, ``_rules.py`` its decisions, ``_moves.py`` the table of
allowed state changes, ``_outcome.py`` how an attempt's end is classified, and
``_status.py`` what users see of a run (and how it is cancelled).
"""

from insitu.engine._engine import Engine, RunLoop, resolve_resources
from insitu.engine._params import bind_params, parse_cli_params
from insitu.engine._status import cancel_run, engine_alive, shown_state, shown_task_state

__all__ = ["Engine", "RunLoop", "bind_params", "cancel_run", "engine_alive",
           "parse_cli_params", "resolve_resources", "shown_state", "shown_task_state"]
