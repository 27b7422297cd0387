"""The `cnnctl` command line: a thin shell over the library (app.py)."""
