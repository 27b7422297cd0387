"""Stage 6 — reporting: a run folder → figures and report.html.

plots.py             the canvas: PNGs written atomically, grids of panels, helpers every figure shares
curves.py            loss and metric per epoch, runs overlaid
scores.py            confusion matrices, ROC and precision-recall curves
multilabel_plots.py  multi-label: a 2x2 confusion matrix per label, precision-recall curves at the thresholds
grids.py             examples, filters, feature maps, the convolution demonstration
trust_plots.py       Grad-CAM overlays, the reliability diagram, accuracy against coverage
figures.py           which run file feeds which figure
feature_maps.py      each conv/pool layer's output for one input
explanation_files.py `cnnctl explain`'s overlays and explain.npz
report.py            report.html: the whole run on one self-contained page
page.py              what every HTML page shares: the style sheet, tables, numbers, escaping
report_facts.py      report.html's model, data and environment sections
compare.py           `cnnctl runs` and `cnnctl compare`
data_overview.py     `cnnctl data`: a config's data without training, and a grid of samples
convolution_demo.py  `cnnctl filter`: convolution → ReLU → max-pooling on a picture
tune_plots.py        `cnnctl tune`'s figures: history, slices, importances
tune_report.py       tune_report.html and the tune folder's figures
"""
