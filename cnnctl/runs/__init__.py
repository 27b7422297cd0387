"""The run folder, the contract between the stages: every file name, the status, the lock, atomic writes.

contract.py  every file name of a run folder, and the rules its readers share (metric rows, top-k, epochs,
             verdict and status colours)
folder.py    creating a run (unique, never overwritten), finding it again (`last`, an id, a path)
atomic.py    files written whole or not at all: temporary name, flush, rename (or hard link); stale temporaries
history.py   history.csv read back as columns, for every reader of a run
facts.py     data.json and environment.json checked as they are read (types and ranges their readers rely on)
model_file.py model.keras read back: checked before Keras opens it, loaded in safe mode
status.py    environment.json's status and the training lock
output.py    files the user names with --out: checked first, never written over what exists without --overwrite
"""
