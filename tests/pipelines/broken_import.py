import insitu

X = 1
Y = undefined_name + 1


@insitu.pipeline
def p() -> None:
    pass
