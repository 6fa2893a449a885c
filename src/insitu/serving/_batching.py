"""Adaptive batching inside a replica: requests whose inputs agree (same names, datatypes
and trailing shape, same outputs asked for) are stacked row-wise, predicted in one call and
split again. A request that fails its checks, or a group whose predict raises, is answered
on its own; the others are not affected."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np

from insitu.serving._codec import Request
from insitu.serving._errors import BadInput, ModelFailed
from insitu.serving._runtime import Runtime

Outcome = dict[str, np.ndarray] | BaseException


def _key(req: Request) -> tuple[Any, ...]:
    return (tuple((n, a.dtype.str, a.shape[1:]) for n, a in req.inputs.items()),
            tuple(req.outputs or ()), req.v1)


def predict_many(runtime: Runtime, reqs: list[Request],
                 boundary: Callable[[Callable[[], dict[str, np.ndarray]]], Outcome]
                 ) -> list[tuple[Outcome, int]]:
    """Each request's outputs (or error) and the size of the batch it was predicted in.
    ``boundary`` calls the model and turns what it raises into :class:`ModelFailed`."""
    results: list[tuple[Outcome, int]] = [(BadInput("unanswered"), 1)] * len(reqs)
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, r in enumerate(reqs):
        if runtime.batchable and all(a.ndim >= 1 for a in r.inputs.values()):
            groups.setdefault(_key(r), []).append(i)
        else:
            groups[("alone", i)] = [i]
    for idx in groups.values():
        if len(idx) == 1:
            results[idx[0]] = (_alone(runtime, reqs[idx[0]], boundary), 1)
            continue
        rows = [reqs[i].rows for i in idx]
        names = list(reqs[idx[0]].inputs)
        stacked = {n: np.concatenate([reqs[i].inputs[n] for i in idx]) for n in names}
        first = reqs[idx[0]]
        got = boundary(functools.partial(runtime.predict, stacked, first.outputs))
        total = sum(rows)
        if isinstance(got, BaseException) or any(
                v.ndim == 0 or v.shape[0] != total for v in got.values()):
            for i in idx:  # answer each alone: one bad request must not fail the others
                results[i] = (_alone(runtime, reqs[i], boundary), 1)
            continue
        start = 0
        for i, n in zip(idx, rows, strict=True):
            results[i] = ({k: v[start:start + n] for k, v in got.items()}, len(idx))
            start += n
    return results


def _alone(runtime: Runtime, req: Request,
           boundary: Callable[[Callable[[], dict[str, np.ndarray]]], Outcome]) -> Outcome:
    return boundary(functools.partial(runtime.predict, req.inputs, req.outputs))


def model_boundary(call: Callable[[], dict[str, np.ndarray]]) -> Outcome:
    """Run the model; what it raises becomes a :class:`ModelFailed` naming the cause."""
    try:
        return call()
    except BadInput as e:
        return e
    except Exception as e:  # noqa: BLE001 - the model's own error, reported to the caller
        return ModelFailed(f"the model raised {type(e).__name__}: {e}")
