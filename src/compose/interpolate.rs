//! Compose variable interpolation: `${V}`, `${V:-d}`, `${V-d}`, `${V:?e}`, `${V?e}`, `${V:+a}`, `${V+a}`, `$$`.
