"""Authoring: ``@step``, ``@pipeline``, handles, branches, and compilation to a PipelineSpec.

Contract: tracing a pipeline never runs a step; it records calls and returns handles.
:func:`compile_pipeline` either returns a complete spec or raises ``ValidationError``
listing every problem found, each with file and line.
"""

from insitu.sdk._control import Elif, Else, If, on_exit
from insitu.sdk._handles import Condition, Handle, Output, Param
from insitu.sdk._loader import load_function, load_pipeline
from insitu.sdk._pipeline import Pipeline, compile_pipeline, pipeline
from insitu.sdk._step import Step, StepOptions, step

__all__ = ["Condition", "Elif", "Else", "Handle", "If", "Output", "Param", "Pipeline", "Step",
           "StepOptions", "compile_pipeline", "load_function", "load_pipeline", "on_exit",
           "pipeline", "step"]
