"""The run folder, the contract between the stages: every file name, the status, the lock, atomic writes.

    contract.py  the names of every file in a run folder and the rules readers share (metric rows, top-k, epochs)
    folder.py    creating a run (unique, never overwritten), finding it again (`last`, an id, a path), atomic writes
    status.py    environment.json's status and the training lock
"""
