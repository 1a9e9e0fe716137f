"""Every distillation method by its `slimbert compress` name."""

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
