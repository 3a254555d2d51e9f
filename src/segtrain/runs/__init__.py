"""Run folders: :class:`RunFolder` is the one owner of their layout.

A run folder (``<runs_root>/<name>-<UTC timestamp>/``, made by :class:`segtrain.train.TrainingRun`)::

    config.yaml          the full config the run trained with
    metrics.json         summary (monitor, best, steps, ...) and one record per validation
    metrics.csv          the same records as a table
    checkpoints/         best.ckpt (weights only, best monitored validation metric), final.ckpt
                         (end of every run segment), step-N.ckpt (the newest train.keep_checkpoints
                         periodic ones) and last.ckpt (a link to the newest periodic one)
    tensorboard/         Lightning's TensorBoard log
    postprocess.yaml     segment settings chosen by ``segtrain tune`` (applied whenever the run is loaded)
    run.json             where the run came from: its parent run (fine-tuning), if any, and the data it
                         saw (:meth:`RunFolder.record_data`: per source paths, shapes, dtypes, content
                         hashes and voxels per class)
    selftrain.json       self-training runs: one record per iteration (thresholds, pixels kept per
                         class, metrics, checkpoint); ``checkpoints/`` then holds the last iteration's
                         model (a hard link, or a copy)
    iterations/NN/       self-training runs: iteration NN's own run folder (config, metrics,
                         checkpoints) plus pseudo_labels.json (the thresholds and the pixels kept per
                         class of the pseudo-labels it trained on), figure.png (a validation image |
                         ground truth | prediction | pseudo-label) and, with a mean teacher,
                         teacher.pt (the averaged weights that made the next pseudo-labels)

Which checkpoint a model is loaded from (:meth:`RunFolder.model_checkpoint`: the newest readable
one, unless asked for another) and which one a run resumes from
(:meth:`RunFolder.resume_checkpoint`: the newest readable full-state one) is decided here and
nowhere else.

:func:`list_runs`, :func:`sort_runs` and :func:`format_runs` (a text table, CSV or Markdown) compare
runs side by side (``segtrain runs``, the Runs panel).
"""

from segtrain.runs.checkpoints import (
    TRAINING_STATE, CheckpointInfo, checkpoint_is_full, checkpoint_step, weights_only,
)
from segtrain.runs.fingerprints import (
    HASH_FULL_BYTES, HASH_SAMPLE_ELEMENTS, array_fingerprint, source_record,
)
from segtrain.runs.folder import (
    RunFolder,
)
from segtrain.runs.layout import (
    BEST_CKPT, CHECKPOINTS, CONFIG_FILE, FIGURE_FILE, FINAL_CKPT, FULL_STATE, ITERATIONS, LAST_CKPT,
    METRICS_CSV, METRICS_JSON, PERIODIC_CHECKPOINT, POSTPROCESS_FILE, PSEUDO_LABELS_FILE, RUN_FILE,
    SELFTRAIN_FILE, STATUSES, TEACHER_FILE, TENSORBOARD, WEIGHTS_ONLY,
)
from segtrain.runs.root import (
    RUNS_ENV, RUNS_ROOT_TIP, default_runs_root,
)
from segtrain.runs.summary import (
    RunSummary,
)
from segtrain.runs.table import (
    BASE_COLUMNS, FORMATS, METRIC_COLUMNS, SORT_ORDERS, TAIL_COLUMNS, Column, cell_text, fine_tune_note,
    format_csv, format_markdown, format_megabytes, format_runs, format_size, format_table, is_metric_column,
    is_run_dir, list_runs, load_run, run_columns, sort_runs, sort_value,
)

__all__ = [
    "BASE_COLUMNS", "BEST_CKPT", "CHECKPOINTS", "CONFIG_FILE", "CheckpointInfo", "Column", "FIGURE_FILE",
    "FINAL_CKPT", "FORMATS", "FULL_STATE", "HASH_FULL_BYTES", "HASH_SAMPLE_ELEMENTS", "ITERATIONS", "LAST_CKPT",
    "METRICS_CSV", "METRICS_JSON", "METRIC_COLUMNS", "PERIODIC_CHECKPOINT", "POSTPROCESS_FILE",
    "PSEUDO_LABELS_FILE", "RUNS_ENV", "RUNS_ROOT_TIP", "RUN_FILE", "RunFolder", "RunSummary", "SELFTRAIN_FILE",
    "SORT_ORDERS", "STATUSES", "TAIL_COLUMNS", "TEACHER_FILE", "TENSORBOARD", "TRAINING_STATE", "WEIGHTS_ONLY",
    "array_fingerprint", "cell_text", "checkpoint_is_full", "checkpoint_step", "default_runs_root",
    "fine_tune_note", "format_csv", "format_markdown", "format_megabytes", "format_runs", "format_size",
    "format_table", "is_metric_column", "is_run_dir", "list_runs", "load_run", "run_columns", "sort_runs",
    "sort_value", "source_record", "weights_only",
]
