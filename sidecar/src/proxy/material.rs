//! A port's TLS material: every file its plan entry names, read in one pass, and the rustls
//! configurations built from it. Reading and building are separate so the reloader can compare
//! raw bytes cheaply and only rebuild on change.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use tls_steal_crds::plan::PortPlan;

use super::files::{FileError, FileResolver};
use super::pem::PemError;
use super::tls_client::{self, UpstreamTls};
use super::tls_server;

/// Why a port's material is unusable: the file (or setting) and the reason.
#[derive(Clone, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[error("{what}: {reason}")]
pub struct MaterialError {
    /// A file path, or the name of the setting at fault.
    pub what: String,
    pub reason: String,
}

impl MaterialError {
    pub fn new(what: impl Into<String>, reason: impl Into<String>) -> Self {
        MaterialError {
            what: what.into(),
            reason: reason.into(),
        }
    }
}

impl From<PemError> for MaterialError {
    fn from(e: PemError) -> Self {
        MaterialError {
            what: e.file,
            reason: e.reason,
        }
    }
}

impl From<FileError> for MaterialError {
    fn from(e: FileError) -> Self {
        MaterialError {
            reason: explain_permission(e.reason),
            what: e.path,
        }
    }
}

/// The text `std::io::Error` gives `EACCES`.
const EACCES_TEXT: &str = "Permission denied (os error 13)";

/// The proxy runs as its own non-root uid, so an app's key file with a tight mode (0600, owned
/// by the app's user) is unreadable to it: say so, and what fixes it.
fn explain_permission(reason: String) -> String {
    if !reason.contains(EACCES_TEXT) {
        return reason;
    }
    reason.replace(
        EACCES_TEXT,
        "permission denied (os error 13): the tls-steal-proxy container's user cannot read it \
         (keep the Secret volume's default mode 0644, or set `defaultMode: 0440` and the pod's \
         `securityContext.fsGroup`)",
    )
}

/// One file as read.
#[derive(Clone, Debug, Hash)]
pub struct RawFile {
    pub path: String,
    pub bytes: Vec<u8>,
}

/// One trust-root file: read, or (an entry of a directory) why it could not be.
#[derive(Clone, Debug, Hash)]
pub struct RootFile {
    pub path: String,
    /// Found in a `trustRoots` directory: skipped when unusable, rather than failing the port.
    pub in_dir: bool,
    pub bytes: Result<Vec<u8>, String>,
}

/// Every file of one port entry, read.
#[derive(Clone, Debug, Hash)]
pub struct RawMaterial {
    pub server_cert: RawFile,
    pub server_key: RawFile,
    pub server_roots: Vec<RootFile>,
    pub client_auth: Option<(RawFile, RawFile)>,
    pub client_roots: Vec<RootFile>,
}

impl RawMaterial {
    /// Reads every file `plan` refers to, in the filesystem of the container it names.
    pub fn read(plan: &PortPlan, files: &FileResolver) -> Result<Self, MaterialError> {
        let files = files.for_container(&plan.container);
        let one = |p: &str| -> Result<RawFile, MaterialError> {
            Ok(RawFile {
                path: p.to_owned(),
                bytes: files.read(p)?,
            })
        };
        let many = |paths: &[String]| -> Result<Vec<RootFile>, MaterialError> {
            let mut v = Vec::new();
            for p in paths {
                let entries = files.read_file_or_dir(p)?;
                // A named file comes back alone under its own name; anything else is a directory.
                let in_dir = entries.len() != 1 || entries[0].path != *p;
                v.extend(entries.into_iter().map(|e| RootFile {
                    path: e.path,
                    in_dir,
                    bytes: e.bytes,
                }));
            }
            Ok(v)
        };
        let s = &plan.agent_as_server;
        let c = &plan.agent_as_client;
        Ok(RawMaterial {
            server_cert: one(&s.authentication.cert_pem)?,
            server_key: one(&s.authentication.key_pem)?,
            server_roots: many(
                s.verification
                    .as_ref()
                    .map(|v| v.trust_roots.as_slice())
                    .unwrap_or_default(),
            )?,
            client_auth: match &c.authentication {
                Some(a) => Some((one(&a.cert_pem)?, one(&a.key_pem)?)),
                None => None,
            },
            client_roots: many(&c.verification.trust_roots)?,
        })
    }

    /// A cheap change detector over every byte and path read.
    pub fn fingerprint(&self) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.hash(&mut h);
        h.finish()
    }
}

/// The usable TLS material of a port: the server side toward clients, the client side toward
/// the application.
pub struct PortTls {
    pub server: Arc<rustls::ServerConfig>,
    pub upstream: Arc<UpstreamTls>,
}

impl PortTls {
    pub fn build(plan: &PortPlan, raw: &RawMaterial) -> Result<Self, MaterialError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = tls_server::server_config(&plan.agent_as_server, raw, provider.clone())?;
        let upstream = tls_client::upstream_tls(&plan.agent_as_client, raw, provider)?;
        Ok(PortTls {
            server: Arc::new(server),
            upstream: Arc::new(upstream),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_denied_is_explained() {
        let real = std::io::Error::from_raw_os_error(13).to_string();
        let e = MaterialError::from(FileError {
            path: "/tls/tls.key".into(),
            reason: real,
        });
        assert_eq!(e.what, "/tls/tls.key");
        assert!(
            e.reason.starts_with("permission denied (os error 13)"),
            "{e}"
        );
        assert!(e.reason.contains("fsGroup"), "{e}");
        let other = MaterialError::from(FileError {
            path: "/x".into(),
            reason: "not found".into(),
        });
        assert_eq!(other.reason, "not found");
    }
}
