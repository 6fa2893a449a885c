"""The errors a request can meet, each with the HTTP status it is answered with.

They travel from a replica to the front process as (status, message), so each is a plain
message with a fix in it; the front answers them as Open Inference Protocol error bodies
(``{"error": "..."}``).
"""

from __future__ import annotations

from insitu.errors import InsituError, NotFound, UserError


class BadInput(UserError, ValueError):
    """A request the model cannot take: malformed JSON, wrong shape or datatype (400)."""

    status = 400


class TooLarge(UserError):
    """A request body over the endpoint's size limit (413)."""

    status = 413


class UnknownModel(NotFound):
    """A model or version this server does not serve (404)."""

    status = 404


class ModelFailed(InsituError):
    """The model raised in ``predict``, or could not be loaded (500)."""

    status = 500


def status_of(err: BaseException) -> int:
    return int(getattr(err, "status", 500))
