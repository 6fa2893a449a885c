import insitu

X = 1
Y = undefined_name + 1  # noqa: F821 - this file must fail to import


@insitu.pipeline
def p() -> None:
    pass
