"""Stage 5 — evaluation: a trained model and a held-out split → numbers, the diagnosis, predictions.

metrics.py          accuracy, top-k, precision/recall/F1, ROC-AUC with scikit-learn; the report files
multilabel.py       multi-label: a decision threshold per label, subset accuracy, Hamming loss, F1s, mAP
diagnosis.py        over- or underfitting, read from history.csv, with evidence and advice
verdicts.py         the diagnosis rules' conclusions in words, their thresholds and advice
backbone_advice.py  the diagnosis' advice for a run with a pretrained backbone, worded from its config
scoring.py          a model and a split → probabilities; re-evaluating a run folder
predict.py          classifying new files and arrays with a run: inputs read as training saw them
predictions.py      what predict answers per input (top classes or label sets), the reject option, the CSV
export.py           SavedModel / ONNX / TFLite, each checked against model.keras with its own runtime
export_runtimes.py  the runtimes an artefact is checked with (tf.saved_model, onnxruntime, LiteRT)
gradcam.py          Grad-CAM: where in an input the model looked for a class
gradcam_probe.py    the model rebuilt with a zero shift at the chosen layer, and the logits it differentiates
gradcam_examples.py gradcam.npz: a right and a wrong example per class with their maps, kept by every evaluation
calibration.py      how far confidence is from accuracy (ECE, Brier, NLL), temperature, accuracy by coverage
temperature.py      evaluate.calibrate: temperature, fitted on val and folded into model.keras's output layer
explain.py          `cnnctl explain`: Grad-CAM overlays of new inputs and explain.npz
"""
