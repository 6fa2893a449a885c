"""The demo pipeline (``insitu demo``); the same file is ``examples/classification.py``."""
