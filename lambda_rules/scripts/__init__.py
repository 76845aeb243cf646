"""Programs that run outside the process that imports us: in a Pants sandbox, or under the
Lambda runtime's own CPython (3.9 to 3.14).

Standard library only. They are shipped into their sandboxes as file contents together with
`lambda_rules/__init__.py` and `lambda_rules/facts.py`, and import nothing else of ours: an import
of another module would work here and fail only in a sandbox. `bootstrap.py` and `bytecode.py`
run as plain files and import nothing of ours at all.
"""
