"""Package discovery: the one part of the build pyproject.toml cannot say.

The repository keeps the design card's layout (core/, tui/, themes/ at the top) while the
installed package is claimroom.core, claimroom.tui and claimroom.themes. pyproject.toml's
``packages.find`` cannot add that ``claimroom.`` prefix, so the packages are found here:
every folder below the three ships without being listed, a new subpackage (core/infra) and a
folder of data files (core/redis/lua) alike. Which files inside them ship is MANIFEST.in's business;
everything else about the build is in pyproject.toml.
"""

from __future__ import annotations

from setuptools import find_namespace_packages, setup

TOP = ("core", "tui", "themes")

setup(
    package_dir={f"claimroom.{top}": top for top in TOP},
    packages=[
        f"claimroom.{name}"
        for name in find_namespace_packages(
            include=[pattern for top in TOP for pattern in (top, f"{top}.*")],
            exclude=["*.__pycache__"],
        )
    ],
)
