"""Only mypy reads this tree (pyproject.toml, [tool.mypy]): core, tui and themes here are
symlinks to the source folders, under their installed names.

This file makes ``claimroom`` a regular package here. Left a namespace package, it lost to
an installed claimroom: mypy then checked ``claimroom.core`` from site-packages (it ships
py.typed) and reported nothing about the source's core.
"""
