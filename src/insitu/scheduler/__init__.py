"""insitu.scheduler: placement (draft)."""
from insitu.scheduler._model import Decision, Node, Placement, Request
from insitu.scheduler._state import ClusterState

__all__ = ["ClusterState", "Decision", "Node", "Placement", "Request"]
