"""insitu: an ML platform in one Python package."""

__version__ = "0.1.0"
