"""BioImage.IO model packages: export a run (:func:`export_run`, `segtrain export-model`, the Runs
panel). Packages are run by :mod:`segtrain.predict.package` (`segtrain predict --run model.zip`,
the Predict panel); the network packages carry is :mod:`segtrain.models.packaged`."""

from segtrain.zoo.export import PackageInfo, export_run

__all__ = ["PackageInfo", "export_run"]
