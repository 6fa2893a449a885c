"""A pipeline with several problems, all reported at once."""
import insitu


@insitu.step(memory="lots")
def a(x: int) -> int:
    return x


@insitu.step
def b(x: int, y: int) -> int:
    return x + y


@insitu.pipeline
def invalid(n: int = 1) -> None:
    a(n)
    b(1, 2, 3)
    b(1, z=2)
