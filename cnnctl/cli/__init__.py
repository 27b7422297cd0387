"""The command line: a thin shell over cnnctl.api, which it alone calls.

app.py       the entry point (`cnnctl`): the app with every command registered
base.py      the Typer app, the options commands share, user mistakes → one `error:` line and exit code 2
training.py  train (--resume, --processes), cv, tune
runs.py      evaluate, plot, report, sync, predict, export, runs, compare
tools.py     check, data, filter, schema
console.py   what the console shows of one run: header, tables, notes (rendering only)
tables.py    what it shows of several: `runs`, `compare`, the folds of `cv`, the trials of `tune`
reference.py the generated manual pages: docs/commands.md and docs/configuration-reference.md
"""
