import insitu
import insitu.errors


def test_exported_names_are_exactly_the_public_api() -> None:
    assert sorted(insitu.__all__) == [
        "Elif", "Else", "If", "Run", "TrialPruned", "dataset", "datasets", "endpoints", "errors",
        "get_run",
        "list_runs",
        "log_artifact", "log_metric", "log_metrics", "log_params", "models", "on_exit", "pipeline",
        "report", "run", "shard_path", "step", "testing", "train", "tune"]
    for name in insitu.__all__:
        assert hasattr(insitu, name)


def test_dir_lists_every_public_name() -> None:
    # the lazily loaded ones too (run, get_run, models): dir() is what completion shows
    listed = dir(insitu)
    for name in [*insitu.__all__, "run", "get_run", "models", "__version__"]:
        assert name in listed, name


def test_one_exception_root() -> None:
    for name in insitu.errors.__all__:
        obj = getattr(insitu.errors, name)
        if isinstance(obj, type) and issubclass(obj, BaseException):
            assert issubclass(obj, insitu.errors.InsituError) or obj is insitu.errors.Cancelled
    assert issubclass(insitu.errors.NotFound, KeyError)
    assert issubclass(insitu.errors.ParameterError, ValueError)
    assert not issubclass(insitu.errors.Cancelled, Exception)
