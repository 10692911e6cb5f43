"""One module per ``owp`` command: ``register(subparsers)`` adds its parser, ``run(args)``
parses what argparse cannot and calls the library (imported there, so that ``--help`` stays
torch-free)."""
