"""cmal_widgets: the notebook layer of cmal (ipywidgets 8 + plotly).

Installed with ``pip install "cmal[widgets]"`` from the ``widgets/`` folder under the import name
``cmal_widgets`` (a name that cannot clash with the ``ipywidgets`` package or a user's ``widgets`` module).
Each view holds a plain Python model object that the tests drive without a browser:

- :class:`~cmal_widgets.explorer.Explorer` over :class:`~cmal_widgets.explorer.ExplorerModel`: a 2-D map
  (UMAP/PCA) coloured by label, cluster, ...;
- :class:`~cmal_widgets.controls.SelectionControls` over :class:`~cmal_widgets.controls.SelectionModel`: k_t, k_m,
  epsilon, strategy, "Select batch";
- :class:`~cmal_widgets.browser.ClusterBrowser` over :class:`~cmal_widgets.browser.ClusterBrowserModel`: clusters by
  size, round-robin order, thumbnails;
- :class:`~cmal_widgets.monitor.TrainingMonitor` over :class:`~cmal_widgets.monitor.TrainingMonitorModel`: live
  epochs, learning curves;
- :class:`~cmal_widgets.labeling.LabelingWidget` over :class:`~cmal_widgets.labeling.LabelingModel`: a batch to
  label by hand, saved click by click.

Where no kernel is running (the documentation site), every view displays a static snapshot instead: see
:mod:`cmal_widgets.static`. :func:`~cmal_widgets.static.row` and :func:`~cmal_widgets.static.column` lay views out.

cmal never imports this package.
"""

from cmal_widgets.browser import ClusterBrowser, ClusterBrowserModel
from cmal_widgets.controls import BatchResult, SelectionControls, SelectionModel
from cmal_widgets.explorer import Explorer, ExplorerModel
from cmal_widgets.labeling import LabelingModel, LabelingWidget
from cmal_widgets.monitor import TrainingMonitor, TrainingMonitorModel, learning_curve_figure, stop_signal_figure
from cmal_widgets.projection import project
from cmal_widgets.static import column, row

__all__ = [
    "BatchResult",
    "ClusterBrowser",
    "ClusterBrowserModel",
    "Explorer",
    "ExplorerModel",
    "LabelingModel",
    "LabelingWidget",
    "SelectionControls",
    "SelectionModel",
    "TrainingMonitor",
    "TrainingMonitorModel",
    "column",
    "learning_curve_figure",
    "stop_signal_figure",
    "project",
    "row",
]
