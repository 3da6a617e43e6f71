//! One module per subcommand. Each turns its arguments into a plan, then carries it out.
