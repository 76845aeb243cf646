"""Programs that run outside the process that imports us: in a Pants sandbox, or under the
Lambda runtime's own CPython (3.9 to 3.14).

Standard library only. The local invoker (`invoke.py` and the modules it imports) and the bytecode
compiler (`bytecode.py`, `canonical_marshal.py`) are shipped into their sandboxes as file contents,
each with exactly the files of ours it imports (`lambda_rules.sandbox_files`): an import of another
module would work here and fail only in a sandbox. `bootstrap.py` runs as a plain file, copied
alone into the runtime directory, and imports nothing of ours at all.
"""
