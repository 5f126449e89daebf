"""One module per CLI subcommand: ``register(parser)`` adds arguments, ``run(args) -> int`` runs it."""
