//! Streams through the engine's archive endpoints: the tar of a helper's mounted data
//! (`GET /containers/{id}/archive`) and unpacking a tar into it (`PUT /containers/{id}/archive`).

use bollard::query_parameters::{DownloadFromContainerOptions, UploadToContainerOptions};
use bytes::Bytes;
use futures_util::{Stream, TryStreamExt};

use super::helper::{DATA_PATH, HelperContainer};
use super::{Engine, EngineError, describe, short};

impl Engine {
    /// The tar stream of everything under the helper's data path. Entries are relative to the data root
    /// (`./`, `./sub/`, `./sub/file`), with numeric ownership and modes as stored.
    pub fn download_data(
        &self,
        helper: &HelperContainer,
    ) -> impl Stream<Item = Result<Bytes, EngineError>> + Send + 'static {
        let id = helper.id().to_string();
        self.docker
            .download_from_container(
                &id,
                Some(DownloadFromContainerOptions {
                    path: format!("{DATA_PATH}/."),
                }),
            )
            .map_err(move |e| EngineError::Api {
                operation: format!("read data through helper `{}`", short(&id)),
                message: describe(&e),
            })
    }

    /// Unpacks a tar stream into the helper's data path. Ownership in the tar headers is kept, but the
    /// engine ignores the entry for the data path itself (see [`Engine::upload_root`]).
    pub async fn upload_data(
        &self,
        helper: &HelperContainer,
        tar: impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
    ) -> Result<(), EngineError> {
        self.upload_to(helper, DATA_PATH, tar).await
    }

    /// Unpacks a tar stream whose entries lie under `data/` into the helper's root, so that the entry
    /// `data/` sets the owner, mode and times of the mounted volume's root as well.
    pub async fn upload_root(
        &self,
        helper: &HelperContainer,
        tar: impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
    ) -> Result<(), EngineError> {
        self.upload_to(helper, "/", tar).await
    }

    async fn upload_to(
        &self,
        helper: &HelperContainer,
        path: &str,
        tar: impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
    ) -> Result<(), EngineError> {
        self.docker
            .upload_to_container(
                helper.id(),
                Some(UploadToContainerOptions {
                    path: path.to_string(),
                    ..Default::default()
                }),
                bollard::body_try_stream(tar),
            )
            .await
            .map_err(|e| EngineError::Api {
                operation: format!("write data through helper `{}`", short(helper.id())),
                message: describe(&e),
            })
    }
}
