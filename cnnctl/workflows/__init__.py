"""Stage 7 — workflows: the stages composed into what a command does, each ending in a complete run folder.

train.py          one `cnnctl train`: prepare → run folder → fit → evaluate → figures → report.html → status
resume.py         `cnnctl train --resume RUN`: continue a run in its own folder and finish it the same way
crossval.py       `cnnctl cv`: K runs, one per fold, and their summary
tune.py           `cnnctl tune`: an Optuna study shared by its workers, one run folder per trial, pruning
tune_space.py     `tune:` paths checked against the config; a trial's config; Optuna's distributions
tune_study.py     study.db opened or refused, the sampler, the workers' lock, the trial-<n> folders
tune_summary.py   tune_summary.json, best.yaml, the figures and tune_report.html; what a search optimises
tracking.py       train.mlflow: a run logged to an MLflow server, what was sent kept in mlflow.json; cnnctl sync
"""

from cnnctl.runtime import quiet_backend_import

# Workflows train, and Keras imports TensorFlow with pages of C++ start-up logs: import it quietly first. A tune
# worker process starts here (`python -m cnnctl.workflows.tune`), before any other cnnctl module could.
quiet_backend_import()
