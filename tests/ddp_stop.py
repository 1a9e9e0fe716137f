"""Run by torchrun in tests/test_multiprocess.py: `slimbert ARGS...` whose first process stops
(as if killed) once it has logged step $SLIMBERT_STOP_AFTER."""

import os
import sys

from slimbert.cli import cli
from slimbert.training.state import RunFiles

STOP_AFTER = int(os.environ["SLIMBERT_STOP_AFTER"])
log = RunFiles.log


def stop(self, row):
    log(self, row)
    if row["step"] == STOP_AFTER:
        raise KeyboardInterrupt


RunFiles.log = stop
cli(sys.argv[1:], prog_name="slimbert")
