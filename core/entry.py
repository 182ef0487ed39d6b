"""The ``claimroom`` console script: sends ``hook`` the short way, everything else to the CLI.

Claude Code runs ``claimroom hook EVENT`` on every edit, so that path must start fast:
it is dispatched here, before ``core/cli.py`` (argparse, the Store, asyncio) is imported.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["hook"]:
        from .claude.hook_cli import main as hook_main

        return hook_main(args[1:])
    from .cli import main as cli_main

    return cli_main(args)


if __name__ == "__main__":
    raise SystemExit(main())
