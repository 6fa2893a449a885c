import insitu


@insitu.step
def s() -> int:
    return 1


@insitu.pipeline
def p() -> None:
    s()


s()
