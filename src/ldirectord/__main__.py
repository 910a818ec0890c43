"""``python -m ldirectord`` runs the command line."""

from ldirectord.cli import main

raise SystemExit(main())
