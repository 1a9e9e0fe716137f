"""Distillation: one training loop, pure loss terms, one file per method.

`METHODS` maps each `slimbert compress <name>` to its method's `run(teacher_dir, spec, out,
method_config, train_config) -> (TrainResult, metadata)`. To add a method: write
compress/<name>.py with a config dataclass and `run`, add it here, add the CLI subcommand,
recipes/<name>.yaml and a test that imports the module (tests/test_registry.py checks all four).
"""

from slimbert.compress import bilstm, kd, minilm, textcnn, theseus, tinybert, tree

METHODS = {
    "kd": kd.run,
    "tinybert": tinybert.run,
    "theseus": theseus.run,
    "minilm": minilm.run,
    "textcnn": textcnn.run,
    "bilstm": bilstm.run,
    "tree": tree.run,
}
