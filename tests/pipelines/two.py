import insitu


@insitu.step
def one() -> int:
    return 1


@insitu.pipeline
def first() -> None:
    one()


@insitu.pipeline
def second() -> None:
    one()
