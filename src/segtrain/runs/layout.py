"""The names inside a run folder (see :mod:`segtrain.runs`): only :class:`segtrain.runs.RunFolder`
and the rest of this package use them."""

CONFIG_FILE = "config.yaml"
METRICS_JSON = "metrics.json"
METRICS_CSV = "metrics.csv"
CHECKPOINTS = "checkpoints"
POSTPROCESS_FILE = "postprocess.yaml"
RUN_FILE = "run.json"
SELFTRAIN_FILE = "selftrain.json"
ITERATIONS = "iterations"
PSEUDO_LABELS_FILE = "pseudo_labels.json"
FIGURE_FILE = "figure.png"
TEACHER_FILE = "teacher.pt"
TENSORBOARD = "tensorboard"
FINAL_CKPT = "final.ckpt"
BEST_CKPT = "best.ckpt"
LAST_CKPT = "last.ckpt"
PERIODIC_CHECKPOINT = "step-{step}"  # Lightning's file name template: step-N.ckpt
STATUSES = ("finished", "stopped", "incomplete", "empty")
FULL_STATE = (FINAL_CKPT, LAST_CKPT)  # written with optimizer state: a run can resume from them
WEIGHTS_ONLY = (BEST_CKPT,)
