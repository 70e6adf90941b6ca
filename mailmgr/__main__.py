"""`python -m mailmgr` is the `mailmgr` command."""

from mailmgr.cli import main

raise SystemExit(main())
