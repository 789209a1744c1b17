"""The scripts behind the tables and prototypes of docs/study.md.

Each is run as ``python -m experiments.study.<name> ARGS...`` (positional
arguments, see its docstring) on a work directory or a sweep's sweep.csv, and
prints markdown or plain lines. The logic sits in importable functions, so
tests/test_study_scripts.py runs each on small constructed inputs.
"""
