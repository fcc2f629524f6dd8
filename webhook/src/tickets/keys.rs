//! The session-ticket signing key: an Ed25519 key pair (PKCS#8) in a Secret of the chart's
//! namespace, created on first start by whichever controller replica gets there first. `current`
//! signs; `previous` (when present) is still trusted, so a rotation overlaps: move `current` to
//! `previous`, delete `current`, restart the controller pods (a new `current` is made and
//! published), then the webhook pods (new pods get both keys; pods injected before keep accepting
//! tickets until they are rolled).
//!
//! The public halves are published in a ConfigMap of the same namespace: the webhook, which
//! injects them into every proxy, reads only that, so its account never sees the private key.

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tls_steal_crds::ticket::{KeyError, SigningKey};

/// The key that signs, and every public key the proxies are told to trust.
#[derive(Debug)]
pub struct SessionKeys {
    pub signer: SigningKey,
    /// base64url public keys: the current one first, then the previous one if any.
    pub public: Vec<String>,
}

/// The key Secret could not be read or made.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error("reading or writing the session key Secret {namespace}/{name}")]
    Kube {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("reading or writing the session public keys ConfigMap {namespace}/{name}")]
    Published {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("the session key Secret {namespace}/{name}, key {field}")]
    Key {
        namespace: String,
        name: String,
        field: &'static str,
        #[source]
        source: KeyError,
    },
}

const CURRENT: &str = "current";
const PREVIOUS: &str = "previous";
/// The ConfigMap key holding the published public keys (comma-separated, current first).
const PUBLISHED: &str = "keys";

/// The metadata of an object the signer creates in its namespace.
fn own_meta(namespace: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(namespace.into()),
        labels: Some(
            [(
                "app.kubernetes.io/part-of".to_owned(),
                "tls-steal".to_owned(),
            )]
            .into(),
        ),
        ..Default::default()
    }
}

/// Writes `public` into the ConfigMap `namespace/name` (created when missing, left alone when
/// it already says so).
pub async fn publish(
    client: Client,
    namespace: &str,
    name: &str,
    public: &[String],
) -> Result<(), KeysError> {
    let api: Api<ConfigMap> = Api::namespaced(client, namespace);
    let err = |source| KeysError::Published {
        namespace: namespace.into(),
        name: name.into(),
        source,
    };
    let value = public.join(",");
    let mut conflict = None;
    for _ in 0..5 {
        let result = match api.get_opt(name).await.map_err(err)? {
            Some(cm) if cm.data.as_ref().and_then(|d| d.get(PUBLISHED)) == Some(&value) => {
                return Ok(());
            }
            Some(mut cm) => {
                cm.data
                    .get_or_insert_default()
                    .insert(PUBLISHED.into(), value.clone());
                api.replace(name, &PostParams::default(), &cm)
                    .await
                    .map(|_| ())
            }
            None => {
                let cm = ConfigMap {
                    metadata: own_meta(namespace, name),
                    data: Some([(PUBLISHED.to_owned(), value.clone())].into()),
                    ..Default::default()
                };
                api.create(&PostParams::default(), &cm).await.map(|_| ())
            }
        };
        match result {
            Ok(()) => {
                tracing::info!(configmap = %format!("{namespace}/{name}"), keys = public.len(), "session public keys published");
                return Ok(());
            }
            // Both replicas publish at start: read again and compare.
            Err(e @ kube::Error::Api(_)) if is_conflict(&e) => conflict = Some(e),
            Err(e) => return Err(err(e)),
        }
    }
    // Still changing under it after five reads: say so rather than claim it is published.
    Err(err(conflict.expect("only conflicts go round the loop")))
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

/// The public keys published in the ConfigMap `namespace/name`; `None` while it (or its key)
/// does not exist yet.
pub async fn published(
    client: Client,
    namespace: &str,
    name: &str,
) -> Result<Option<Vec<String>>, KeysError> {
    let api: Api<ConfigMap> = Api::namespaced(client, namespace);
    let cm = api
        .get_opt(name)
        .await
        .map_err(|source| KeysError::Published {
            namespace: namespace.into(),
            name: name.into(),
            source,
        })?;
    Ok(cm
        .and_then(|c| c.data?.remove(PUBLISHED))
        .map(|v| split_keys(&v))
        .filter(|k| !k.is_empty()))
}

/// A comma-separated key list, trimmed, without empty entries.
pub fn split_keys(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Reads the key Secret `namespace/name`, creating it (or its `current` key) when missing.
pub async fn load_or_create(
    client: Client,
    namespace: &str,
    name: &str,
) -> Result<SessionKeys, KeysError> {
    let api: Api<Secret> = Api::namespaced(client, namespace);
    let kube_err = |source| KeysError::Kube {
        namespace: namespace.into(),
        name: name.into(),
        source,
    };
    let key_err = |field, source| KeysError::Key {
        namespace: namespace.into(),
        name: name.into(),
        field,
        source,
    };
    // Two replicas may start together: the loser of the create reads the winner's key.
    for _ in 0..5 {
        let existing = api.get_opt(name).await.map_err(kube_err)?;
        let data = existing
            .as_ref()
            .and_then(|s| s.data.clone())
            .unwrap_or_default();
        if let Some(current) = data.get(CURRENT) {
            let signer = SigningKey::from_pkcs8(&current.0).map_err(|e| key_err(CURRENT, e))?;
            let mut public = vec![signer.public_key()];
            if let Some(prev) = data.get(PREVIOUS) {
                let prev = SigningKey::from_pkcs8(&prev.0).map_err(|e| key_err(PREVIOUS, e))?;
                public.push(prev.public_key());
            }
            return Ok(SessionKeys { signer, public });
        }
        let der = SigningKey::generate_pkcs8().map_err(|e| key_err(CURRENT, e))?;
        let mut data = data;
        data.insert(CURRENT.into(), ByteString(der));
        let result = match existing {
            Some(mut s) => {
                s.data = Some(data);
                api.replace(name, &PostParams::default(), &s)
                    .await
                    .map(|_| ())
            }
            None => {
                let s = Secret {
                    metadata: own_meta(namespace, name),
                    data: Some(data),
                    ..Default::default()
                };
                api.create(&PostParams::default(), &s).await.map(|_| ())
            }
        };
        match result {
            Ok(()) => {
                tracing::info!(secret = %format!("{namespace}/{name}"), "session signing key created")
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(kube_err(e)),
        }
    }
    let e = kube::Error::Api(
        kube::core::Status::failure("the key Secret kept changing", "Conflict")
            .with_code(409)
            .boxed(),
    );
    Err(kube_err(e))
}
