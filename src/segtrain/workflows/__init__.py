"""Workflows: start / resume / fine-tune / self-train a run, train-or-reuse, a correction round with
the oracle user. Generators of typed reports that the panels, the CLI and the benchmarks call; they
hold no workflow of their own (the panels only draw, the CLI only parses and prints, the benchmarks
only measure and print).

Layer: above train/predict/proofread, below plugin/commands. Light to import: PyTorch is imported
by the functions that train."""
