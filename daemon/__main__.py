"""`python -m daemon` runs the depthd command line."""

from daemon.cli import main

raise SystemExit(main())
