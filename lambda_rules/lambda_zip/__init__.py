"""The `lambda-zip` front end: its verbs (`main.py`, `verbs.py`) and the local runner of the
pipeline's steps (`local_build.py`) with its cache folder (`local_cache.py`). No Pants imports."""
