"""Instructor tooling on top of nbgrader: release, collect, grade (sandboxed, in parallel),
feedback, export and report. ``python -m autograder --help``; the README's instructor
section walks through a term. One module per stage:

release  -> collect -> grade (sandbox, execute) -> feedback -> export
"""
