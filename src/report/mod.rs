//! The only module that writes to the terminal: stdout for data, stderr for status, warnings and errors.
