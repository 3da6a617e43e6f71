//! Reads, interpolates and merges Compose files into a [`Project`](super::Project).

use super::{ComposeError, Project, ProjectOptions};

pub fn load_project(_opts: &ProjectOptions) -> Result<Project, ComposeError> {
    todo!("loader")
}
