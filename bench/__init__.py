"""ClawSite's benchmark suite: `python -m bench` (or `make bench`), `--quick` for a short run.

Each ClawSite figure is printed beside its reference (the prototype's path, reproduced here, or a
peer queue) measured in the same run on the same machine, with the ratio and the issue's target.
"""
