"""Where a training run computes and whom it reports to: the Accelerator on the device
--device names (no silent CPU fall back) with the tracker --report-to names (TensorBoard, MLflow,
Weights & Biases; each an optional extra, a missing one a one-line error naming it).
"""

from __future__ import annotations

import importlib.util
from dataclasses import asdict

from accelerate import Accelerator

from slimbert.errors import SlimbertError
from slimbert.models import device
from slimbert.training.config import TRACKERS, TrainConfig
from slimbert.training.state import RunFiles


def tracker_figures(figures: dict) -> dict[str, float]:
    """One step's figures as the trackers get them: the total loss as "loss/total" beside its
    terms "loss/<term>" (an MLflow file store keeps each metric as a file, so "loss" could not
    be both a file and the folder of its terms); train_log.jsonl keeps "loss"."""
    return {("loss/total" if k == "loss" else k): float(v) for k, v in figures.items()}


def check_tracker(name: str) -> None:
    """A one-line error naming the extra when --report-to's package is not installed."""
    if name != "none" and importlib.util.find_spec(TRACKERS[name]) is None:
        raise SlimbertError(
            f"--report-to {name}: the {TRACKERS[name]} package is not installed; "
            f"pip install 'slimbert[{name}]' (or --report-to none)"
        )


def make_accelerator(config: TrainConfig, run: RunFiles | None) -> Accelerator:
    """An Accelerator on the device config.device names, with config.report_to's tracker."""
    target = device(config.device)
    trackers: dict = {}
    if config.report_to != "none":
        check_tracker(config.report_to)
        if run is None:
            raise SlimbertError(f"--report-to {config.report_to}: needs an output folder (--out)")
        trackers = {"log_with": config.report_to, "project_dir": str(run.tracking_dir)}
    accelerator = Accelerator(cpu=target.type == "cpu", **trackers)
    if accelerator.device.type != target.type:
        raise SlimbertError(
            f"--device {config.device}: Accelerate placed training on {accelerator.device.type}; "
            f"pass --device {accelerator.device.type} or set up Accelerate for {target.type}"
        )
    return accelerator


def start_trackers(
    accelerator: Accelerator, config: TrainConfig, run: RunFiles, stage: str
) -> None:
    """One tracker run per stage: TensorBoard under out/tracking/<stage>; MLflow (where
    MLFLOW_TRACKING_URI points) and W&B runs named after the output folder and the stage."""
    if config.report_to == "none":
        return
    values = {
        k: v if isinstance(v, int | float | str | bool) else str(v)
        for k, v in asdict(config).items()
    }
    name = f"{run.out.name}/{stage}"
    run.tracking_dir.mkdir(parents=True, exist_ok=True)
    init = {"mlflow": {"run_name": name}, "wandb": {"name": name, "dir": str(run.tracking_dir)}}
    project = stage if config.report_to == "tensorboard" else "slimbert"
    try:
        accelerator.init_trackers(project, config=values, init_kwargs=init)
    except Exception as exc:  # the tracker's own library refusing its store or settings
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        hint = {"mlflow": "; set MLFLOW_TRACKING_URI to a store it can open"}.get(
            config.report_to, ""
        )
        raise SlimbertError(
            f"--report-to {config.report_to}: the tracker did not start ({first}){hint}"
        ) from None
