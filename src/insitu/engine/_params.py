"""Binding a run's parameters to a spec: the checks live with the spec
(:mod:`insitu.spec._params`), shared with compilation."""

from insitu.spec._params import bind_params, parse_cli_params

__all__ = ["bind_params", "parse_cli_params"]
