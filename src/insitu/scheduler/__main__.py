"""``python -m insitu.scheduler ...`` runs the ``sim`` command."""

from insitu.scheduler._cli import sim

if __name__ == "__main__":
    sim()
