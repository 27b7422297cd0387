"""Stage 4 — training: a prepared config, data and model → a run folder with model.keras and history.csv (the
workflows in cnnctl/workflows/ evaluate and report it after).

prepare.py     load the data, build and compile the model: every mistake found before a folder exists
callbacks.py   the Keras callbacks of a run: early stopping, best model, CSV history, epoch times
backup.py      the callback that saves the training state after every epoch and restores it on `--resume`
averaging.py   train.ema: the moving average of the weights swapped in whenever the model is judged or saved
checkpoint.py  the training state saved after every epoch, read back by `--resume`
loop.py        the fit: a run's first files, model.fit with its callbacks, the fine-tuning phase
guard.py       how a run ends when it does not end well: interrupted, out of memory, disk full, crash
signals.py     Ctrl-C and SIGTERM as exceptions (installed by the command line, not by the library)
distribute.py  train.distribute and joining several processes (MirroredStrategy, Keras' DataParallel)
processes.py   `cnnctl train --processes N`: starting, watching and reporting the local workers
ray_launch.py  `cnnctl train --processes N --ray ADDRESS`: the same processes on a Ray cluster
rehearsal.py   the first training step on two examples, before a run folder exists
lr_find.py     `cnnctl lr-find`: the learning-rate range test
"""
