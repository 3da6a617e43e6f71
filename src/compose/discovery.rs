//! Finds the Compose files and the project directory the way Compose does.
