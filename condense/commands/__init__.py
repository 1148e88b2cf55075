"""CLI subcommands. Each module here has ``register(subparsers)`` adding its commands and the
handlers they call; :mod:`condense.cli` only assembles them."""

#: Modules that contribute subcommands, in ``condense --help`` order.
COMMAND_MODULES = ("data", "train", "tune", "export", "inspect", "app", "bench", "compare")
