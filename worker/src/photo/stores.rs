//! Where the photo tasks keep what every item of a batch must see: the face collection
//! (with the duplicate reservations) and the metadata table. The tasks take them behind
//! their traits ([`FaceCollections`], [`MetadataTable`]) and never know which these are:
//!
//! - [`StoresAt::DataDir`] (embedded mode, the default of `mapfleet run` and the local
//!   commands): JSON files under the data dir, `collections/<id>.json` and
//!   `tables/<table>.json`, kept between runs.
//! - [`StoresAt::Redis`] (workers on a fleet, by default): the fleet's Redis under its
//!   prefix (keys in [`crate::redis_keys`]), which every worker on every machine shares, so
//!   the duplicate check holds across the fleet.

use std::path::Path;
use std::sync::Arc;

use shared::redis_conn::RedisConn;

use super::{DEFAULT_METADATA_TABLE, SetupError};
use crate::face::{FaceCollections, LocalCollections, RedisCollections, SharedAnalyses};
use crate::redis_keys::PhotoKeys;
use crate::store::{LocalMetadataTable, MetadataTable, RedisMetadataTable};

/// Which stores to open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoresAt {
    /// Under the data dir (this machine only).
    DataDir,
    /// In the fleet's Redis at `url`, under `prefix` (`tls`: the files for `rediss://`).
    Redis {
        url: String,
        prefix: String,
        tls: shared::tls::TlsFiles,
        /// How long a photo's analysis stays in Redis for the other workers
        /// ([`crate::face::shared_analyses`]); zero: analyses are not shared.
        shared_analysis: std::time::Duration,
    },
}

/// How long a worker's photo analysis stays in the fleet's Redis by default.
pub const DEFAULT_SHARED_ANALYSIS: std::time::Duration = std::time::Duration::from_secs(30);

/// The face collections and the metadata table of the photo tasks.
#[derive(Clone)]
pub struct PhotoStores {
    pub collections: Arc<dyn FaceCollections>,
    pub metadata: Arc<dyn MetadataTable>,
    /// The photo analyses the fleet's workers share (none under the data dir: one process).
    pub analyses: Option<Arc<SharedAnalyses>>,
}

impl PhotoStores {
    /// The stores under `data_dir`.
    pub fn local(data_dir: &Path) -> Self {
        Self {
            collections: Arc::new(LocalCollections::new(data_dir.join("collections"))),
            metadata: Arc::new(LocalMetadataTable::new(
                data_dir
                    .join("tables")
                    .join(format!("{DEFAULT_METADATA_TABLE}.json")),
            )),
            analyses: None,
        }
    }

    /// The stores in Redis under `prefix`, on a connection the caller made; photo analyses
    /// are shared for `shared_analysis` (zero: not shared).
    pub fn redis(conn: RedisConn, prefix: &str, shared_analysis: std::time::Duration) -> Self {
        let keys = PhotoKeys::new(prefix);
        let analyses = (!shared_analysis.is_zero())
            .then(|| Arc::new(SharedAnalyses::new(conn.clone(), prefix, shared_analysis)));
        Self {
            collections: Arc::new(RedisCollections::new(conn.clone(), prefix)),
            metadata: Arc::new(RedisMetadataTable::new(
                conn,
                keys.table(DEFAULT_METADATA_TABLE),
            )),
            analyses,
        }
    }

    /// Opens the stores `at` says; `data_dir` is used for [`StoresAt::DataDir`]. Connecting to
    /// Redis fails with a message naming the URL (without its password).
    pub async fn open(at: &StoresAt, data_dir: &Path) -> Result<Self, SetupError> {
        match at {
            StoresAt::DataDir => Ok(Self::local(data_dir)),
            StoresAt::Redis {
                url,
                prefix,
                tls,
                shared_analysis,
            } => {
                let conn = shared::redis_schema::connect_with(url, tls)
                    .await
                    .map_err(|error| SetupError::Redis {
                        url: shared::config::redact_url(url),
                        error,
                    })?;
                Ok(Self::redis(conn, prefix, *shared_analysis))
            }
        }
    }
}
