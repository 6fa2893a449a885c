from __future__ import annotations

import tempfile
from pathlib import Path

import insitu


@insitu.step
def fit(lr: float, epochs: int) -> float:
    insitu.log_params(lr=lr, epochs=epochs, optimizer="sgd")
    loss = 1.0
    for _ in range(epochs):
        loss *= 1 - lr
        insitu.log_metric("loss", loss)
    insitu.log_metrics({"val_acc": 1 - loss, "train_acc": 1 - loss / 2})
    d = Path(tempfile.mkdtemp()) / "notes.txt"
    d.write_text(f"lr={lr}")
    insitu.log_artifact(d)
    return loss


@insitu.pipeline
def tracked(lr: float = 0.1, epochs: int = 5) -> None:
    fit(lr, epochs)
