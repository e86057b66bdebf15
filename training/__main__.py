"""`python -m training <command>`: prepare, train, finetune, export, evaluate."""

from .cli import main

raise SystemExit(main())
