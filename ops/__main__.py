"""`python -m ops` is the `backbone` command."""

from ops.cli import main

raise SystemExit(main())
