"""Stage 4 — training: a prepared config, data and model → a run folder with model.keras and history.csv.

prepare.py     load the data, build and compile the model: every mistake found before a folder exists
callbacks.py   the Keras callbacks of a run: early stopping, best model, CSV history, epoch times, state
checkpoint.py  the training state saved after every epoch, read back by `--resume`
loop.py        one run from start to finish: fit, then evaluation, figures and report
guard.py       how a run ends when it does not end well: interrupted, out of memory, disk full, crash
signals.py     Ctrl-C and SIGTERM as exceptions (installed by the command line, not by the library)
resume.py      `cnnctl train --resume RUN`
crossval.py    `cnnctl cv`: K runs, one per fold, and their summary
tune.py        `cnnctl tune`: an Optuna search, one run folder per trial
distribute.py  train.distribute and joining several processes (MirroredStrategy, Keras' DataParallel)
processes.py   `cnnctl train --processes N`: starting, watching and reporting the local workers
rehearsal.py   the first training step on two examples, before a run folder exists
"""
