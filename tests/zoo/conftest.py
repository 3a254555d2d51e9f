from helpers.zoo_runs import cells_run, em_run  # noqa: F401 - fixtures
