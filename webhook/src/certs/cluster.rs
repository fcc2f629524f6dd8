//! The serving certificate in the cluster: create-if-absent / replace of the Secret, the
//! `caBundle` patch of the MutatingWebhookConfiguration, the renewal loop, and the reload loop
//! for certificate files supplied by flags.

use super::*;

/// Flags of the generated certificate (`serve` without certificate files, and `controller
/// --manage-certificate`, which the chart uses for `certificate.mode: selfManaged`).
#[derive(clap::Args, Clone, Debug)]
pub struct CertArgs {
    /// Service name in front of the webhook (DNS names of the generated certificate).
    #[arg(long, default_value = "tls-steal-webhook")]
    pub service_name: String,
    /// Secret holding the generated CA and certificate.
    #[arg(long, default_value = "tls-steal-webhook-tls")]
    pub secret_name: String,
    /// MutatingWebhookConfiguration whose caBundle is kept in sync ("" to leave it alone).
    #[arg(long, default_value = "tls-steal-webhook")]
    pub webhook_config_name: String,
    /// How often the generated certificate is checked for renewal.
    #[arg(long, default_value = "3600")]
    pub cert_check_seconds: u64,
}

impl CertArgs {
    /// The options for the Secret and Service in `namespace`.
    pub fn options(&self, namespace: &str) -> GeneratedCertOptions {
        GeneratedCertOptions {
            namespace: namespace.into(),
            secret_name: self.secret_name.clone(),
            service_name: self.service_name.clone(),
            webhook_config_name: Some(self.webhook_config_name.clone()).filter(|n| !n.is_empty()),
            check_interval: StdDuration::from_secs(self.cert_check_seconds.max(10)),
        }
    }
}

/// Where the generated certificate lives and whom it is for.
#[derive(Clone, Debug)]
pub struct GeneratedCertOptions {
    pub namespace: String,
    pub secret_name: String,
    pub service_name: String,
    /// MutatingWebhookConfiguration whose `caBundle` is kept in sync (`None`: leave it alone).
    pub webhook_config_name: Option<String>,
    /// How often the Secret is checked for renewal (and `caBundle` for drift).
    pub check_interval: StdDuration,
}

/// Reads the Secret, creating or renewing it as needed; converges with other replicas through
/// create conflicts and resourceVersion conflicts.
pub async fn ensure_secret(
    client: &Client,
    opts: &GeneratedCertOptions,
) -> Result<CertBundle, CertError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), &opts.namespace);
    let names = dns_names(&opts.service_name, &opts.namespace);
    for _ in 0..5 {
        let now = OffsetDateTime::now_utc();
        match api.get_opt(&opts.secret_name).await? {
            None => {
                let bundle = generate(&names, now)?;
                let secret = Secret {
                    metadata: kube::api::ObjectMeta {
                        name: Some(opts.secret_name.clone()),
                        namespace: Some(opts.namespace.clone()),
                        labels: Some(
                            [(
                                "app.kubernetes.io/managed-by".to_string(),
                                "tls-steal-webhook".to_string(),
                            )]
                            .into(),
                        ),
                        ..Default::default()
                    },
                    type_: Some("Opaque".into()),
                    data: Some(to_secret_data(&bundle)),
                    ..Default::default()
                };
                match api.create(&PostParams::default(), &secret).await {
                    Ok(_) => {
                        tracing::info!(secret = %opts.secret_name, "created the serving certificate");
                        return Ok(bundle);
                    }
                    Err(kube::Error::Api(e)) if e.code == 409 => continue,
                    Err(e) => return Err(e.into()),
                }
            }
            Some(mut secret) => {
                let existing = secret.data.as_ref().and_then(from_secret_data);
                let renewal = existing
                    .as_ref()
                    .map_or(Renewal::Ca, |b| renewal_needed(b, &names, now));
                let current = match (existing, renewal) {
                    (Some(b), Renewal::None) => return Ok(b),
                    (Some(b), _) => b,
                    (None, _) => CertBundle {
                        ca_cert_pem: String::new(),
                        ca_key_pem: String::new(),
                        cert_pem: String::new(),
                        key_pem: String::new(),
                    },
                };
                let bundle = renew(&current, renewal, &names, now)?;
                secret.data = Some(to_secret_data(&bundle));
                // `replace` carries the resourceVersion read above: a concurrent writer → 409.
                match api
                    .replace(&opts.secret_name, &PostParams::default(), &secret)
                    .await
                {
                    Ok(_) => {
                        tracing::info!(?renewal, secret = %opts.secret_name, "renewed the serving certificate");
                        return Ok(bundle);
                    }
                    Err(kube::Error::Api(e)) if e.code == 409 => continue,
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    Err(CertError::SecretContention)
}

/// JSON patch setting `caBundle` on every webhook of the configuration that does not have it.
/// Each `add` is guarded by a `test` of the webhook's name, so a concurrent reordering fails the
/// patch instead of writing the wrong entry.
pub fn ca_bundle_patch(
    mwc: &MutatingWebhookConfiguration,
    ca_pem: &str,
) -> Option<json_patch::Patch> {
    use json_patch::{AddOperation, PatchOperation, TestOperation, jsonptr::PointerBuf};
    let wanted = ByteString(ca_pem.as_bytes().to_vec());
    let mut ops = Vec::new();
    for (i, wh) in mwc.webhooks.iter().flatten().enumerate() {
        if wh.client_config.ca_bundle.as_ref() == Some(&wanted) {
            continue;
        }
        let idx = i.to_string();
        ops.push(PatchOperation::Test(TestOperation {
            path: PointerBuf::from_tokens(["webhooks", idx.as_str(), "name"]),
            value: serde_json::Value::String(wh.name.clone()),
        }));
        ops.push(PatchOperation::Add(AddOperation {
            path: PointerBuf::from_tokens(["webhooks", idx.as_str(), "clientConfig", "caBundle"]),
            value: serde_json::to_value(&wanted).unwrap_or_default(),
        }));
    }
    (!ops.is_empty()).then_some(json_patch::Patch(ops))
}

/// Brings the MutatingWebhookConfiguration's `caBundle` in line with `ca_pem`.
pub async fn sync_ca_bundle(client: &Client, name: &str, ca_pem: &str) -> Result<(), CertError> {
    let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let Some(mwc) = api.get_opt(name).await? else {
        tracing::warn!(%name, "MutatingWebhookConfiguration not found; caBundle not set");
        return Ok(());
    };
    if let Some(patch) = ca_bundle_patch(&mwc, ca_pem) {
        api.patch(name, &PatchParams::default(), &Patch::<()>::Json(patch))
            .await?;
        tracing::info!(%name, "patched caBundle");
    }
    Ok(())
}

/// Ensures the Secret (made or renewed) and the `caBundle` (a failed patch is only logged:
/// retried on the next check).
async fn ensure(client: &Client, opts: &GeneratedCertOptions) -> Result<CertBundle, CertError> {
    let bundle = ensure_secret(client, opts).await?;
    if let Some(name) = &opts.webhook_config_name
        && let Err(e) = sync_ca_bundle(client, name, &bundle.ca_cert_pem).await
    {
        tracing::warn!(error = %e, "patching caBundle (will retry)");
    }
    Ok(bundle)
}

/// The certificate keeper of `controller --manage-certificate`: [`ensure`] now and every
/// check interval, forever (the webhook serves the Secret's files and reloads them when the
/// kubelet updates its volume).
pub async fn keep(client: Client, opts: GeneratedCertOptions) {
    loop {
        if let Err(e) = ensure(&client, &opts).await {
            tracing::warn!(error = %crate::controller::error_chain(&e), "keeping the serving certificate (will retry)");
        }
        tokio::time::sleep(opts.check_interval).await;
    }
}

/// Generated mode: ensures the Secret, loads it, patches `caBundle`, then keeps checking.
/// Returns the server config once the first certificate is loaded; renewal runs in the
/// background.
pub async fn start_generated(
    client: Client,
    opts: GeneratedCertOptions,
    tls_ready: Arc<AtomicBool>,
) -> Result<RustlsConfig, CertError> {
    let bundle = ensure(&client, &opts).await?;
    let config = RustlsConfig::from_config(server_config(
        bundle.cert_pem.as_bytes(),
        bundle.key_pem.as_bytes(),
    )?);
    tls_ready.store(true, Ordering::SeqCst);
    let reload = config.clone();
    tokio::spawn(async move {
        let mut current = bundle;
        loop {
            tokio::time::sleep(opts.check_interval).await;
            match ensure(&client, &opts).await {
                Ok(b) => {
                    if b != current {
                        match server_config(b.cert_pem.as_bytes(), b.key_pem.as_bytes()) {
                            Ok(c) => {
                                reload.reload_from_config(c);
                                tracing::info!("reloaded the serving certificate");
                                current = b;
                            }
                            Err(e) => tracing::error!(error = %e, "new certificate unusable"),
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "checking the certificate Secret"),
            }
        }
    });
    Ok(config)
}

/// Files mode: serves `cert`/`key` and reloads them when their content changes (polled).
pub async fn start_files(
    cert: PathBuf,
    key: PathBuf,
    poll: StdDuration,
    tls_ready: Arc<AtomicBool>,
) -> Result<RustlsConfig, CertError> {
    let read = |p: &PathBuf| {
        std::fs::read(p).map_err(|source| CertError::Io {
            path: p.clone(),
            source,
        })
    };
    let (mut c, mut k) = (read(&cert)?, read(&key)?);
    let config = RustlsConfig::from_config(server_config(&c, &k)?);
    tls_ready.store(true, Ordering::SeqCst);
    let reload = config.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(poll).await;
            let (Ok(nc), Ok(nk)) = (read(&cert), read(&key)) else {
                continue;
            };
            if nc == c && nk == k {
                continue;
            }
            // Mid-rotation the two files may not match yet: keep the old pair until they do.
            match server_config(&nc, &nk) {
                Ok(cfg) => {
                    reload.reload_from_config(cfg);
                    tracing::info!(cert = %cert.display(), "reloaded the serving certificate");
                    (c, k) = (nc, nk);
                }
                Err(e) => tracing::debug!(error = %e, "certificate files not usable yet"),
            }
        }
    });
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_bundle_patch_only_where_needed() {
        let mwc: MutatingWebhookConfiguration = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "m"},
            "webhooks": [
                {"name": "a.tls-steal.io", "clientConfig": {"caBundle": "eA=="}, "sideEffects": "None", "admissionReviewVersions": ["v1"]},
                {"name": "b.tls-steal.io", "clientConfig": {}, "sideEffects": "None", "admissionReviewVersions": ["v1"]}
            ]
        }))
        .unwrap();
        let p = ca_bundle_patch(&mwc, "x").unwrap();
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(
            v,
            serde_json::json!([
                {"op": "test", "path": "/webhooks/1/name", "value": "b.tls-steal.io"},
                {"op": "add", "path": "/webhooks/1/clientConfig/caBundle", "value": "eA=="}
            ])
        );
    }
}
