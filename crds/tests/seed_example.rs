//! The published example resource loads unchanged and yields the expected plans.

mod common;

use common::*;
use tls_steal_crds::{ConfigSource, MirrordClusterTlsStealConfig, StealPlan, build_plan};

#[test]
fn seed_example_in_repo_matches_shared_copy() {
    // CI lays `shared/` beside the clone; the fixture must stay the published text.
    let shared = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/examples/seed-tls-steal-config.yaml");
    if let Ok(text) = std::fs::read_to_string(&shared) {
        assert_eq!(
            text,
            SEED,
            "crds/tests/fixtures/seed-tls-steal-config.yaml drifted from {}",
            shared.display()
        );
    }
}

#[test]
fn seed_example_deserializes_and_validates() {
    let cfg = seed();
    assert_eq!(
        cfg.metadata.name.as_deref(),
        Some("tls-steal-config-for-example-deploy")
    );
    assert_eq!(
        cfg.metadata.namespace.as_deref(),
        Some("example-deploy-namespace")
    );
    let spec = &cfg.spec;
    assert_eq!(spec.target_path.as_deref(), Some("*/example-deploy*"));
    assert_eq!(spec.ports.len(), 1);
    let p = &spec.ports[0];
    assert_eq!(p.port, 443);
    assert_eq!(
        p.agent_as_server.authentication.cert_pem,
        "/path/to/server/cert.pem"
    );
    assert_eq!(
        p.agent_as_server.alpn_protocols,
        ["h2", "http/1.1", "http/1.0"]
    );
    let v = p.agent_as_server.verification.as_ref().unwrap();
    assert!(!v.allow_anonymous && !v.accept_any_cert);
    assert_eq!(v.trust_roots, ["/path/to/trusted/client/root/cert.pem"]);
    let c = &p.agent_as_client;
    assert_eq!(
        c.authentication.as_ref().unwrap().key_pem,
        "/path/to/client/key.pem"
    );
    assert_eq!(
        c.verification.trust_roots,
        ["/path/to/trusted/server/root/cert.pem"]
    );
    spec.validate().expect("the example is valid");
}

fn example_pod() -> PodBuilder {
    deployment_pod("example-deploy")
        .label("app", "example-deploy")
        .container("app", &[443])
        .container("sidecar", &[])
}

#[test]
fn seed_plans_the_example_deployment() {
    let configs = [ConfigSource::from(&seed())];
    let plan = build_plan(
        &example_pod().target(),
        "example-deploy-namespace",
        &configs,
    );
    assert_eq!(plan.port_numbers(), [443]);
    let port = plan.port(443).unwrap();
    assert_eq!(port.container, "app", "the container that declares 443");
    assert_eq!(
        port.config,
        "MirrordTlsStealConfig/example-deploy-namespace/tls-steal-config-for-example-deploy"
    );
    assert_eq!(port.agent_as_server, seed().spec.ports[0].agent_as_server);
    assert_eq!(plan.configs.len(), 1);
    assert_eq!(plan.configs[0], port.config);
    assert!(plan.discarded.is_empty() && plan.rejected.is_empty());
    assert_eq!(plan.hash.len(), 16);
    assert_eq!(
        plan.files()
            .iter()
            .map(|(_, p)| p.as_str())
            .collect::<Vec<_>>(),
        [
            "/path/to/client/cert.pem",
            "/path/to/client/key.pem",
            "/path/to/server/cert.pem",
            "/path/to/server/key.pem",
            "/path/to/trusted/client/root/cert.pem",
            "/path/to/trusted/server/root/cert.pem",
        ]
    );
    // What the webhook hands the sidecar reads back identically.
    assert_eq!(StealPlan::from_json(&plan.to_json()).unwrap(), plan);
}

#[test]
fn seed_through_container_path_picks_that_container() {
    let mut cfg = seed();
    cfg.spec.inner.target_path = Some("deploy/example-deploy/container/sidecar".into());
    let plan = build_plan(
        &example_pod().target(),
        "example-deploy-namespace",
        &[ConfigSource::from(&cfg)],
    );
    assert_eq!(plan.port(443).unwrap().container, "sidecar");
}

#[test]
fn seed_does_not_apply_elsewhere() {
    let configs = [ConfigSource::from(&seed())];
    let other_deploy = deployment_pod("billing")
        .label("app", "example-deploy")
        .container("app", &[443]);
    assert!(build_plan(&other_deploy.target(), "example-deploy-namespace", &configs).is_empty());
    let other_labels = deployment_pod("example-deploy")
        .label("app", "other")
        .container("app", &[443]);
    assert!(
        build_plan(
            &other_labels.clone().target(),
            "example-deploy-namespace",
            &configs
        )
        .is_empty()
    );
    assert!(
        build_plan(&example_pod().target(), "another-namespace", &configs).is_empty(),
        "namespaced config"
    );
    let empty = build_plan(&other_labels.target(), "example-deploy-namespace", &configs);
    assert_eq!(empty.hash, "");
}

#[test]
fn cluster_scoped_variant_applies_in_every_namespace() {
    let yaml = SEED
        .replace(
            "kind: MirrordTlsStealConfig",
            "kind: MirrordClusterTlsStealConfig",
        )
        .replace("  namespace: example-deploy-namespace\n", "");
    let cfg: MirrordClusterTlsStealConfig = serde_saphyr::from_str(&yaml).unwrap();
    cfg.spec.validate().unwrap();
    let configs = [ConfigSource::from(&cfg)];
    for ns in ["example-deploy-namespace", "elsewhere"] {
        let plan = build_plan(&example_pod().target(), ns, &configs);
        assert_eq!(plan.port_numbers(), [443], "namespace {ns}");
        assert_eq!(
            plan.ports[0].config,
            "MirrordClusterTlsStealConfig/tls-steal-config-for-example-deploy"
        );
    }
}

#[test]
fn plan_json_is_checked() {
    let plan = build_plan(
        &example_pod().target(),
        "example-deploy-namespace",
        &[ConfigSource::from(&seed())],
    );
    let tampered = plan
        .to_json()
        .replace("/path/to/server/key.pem", "/etc/shadow");
    let err = StealPlan::from_json(&tampered).unwrap_err().to_string();
    assert!(err.contains("hash"), "{err}");
    let err = StealPlan::from_json("{\"version\":1")
        .unwrap_err()
        .to_string();
    assert!(err.contains("not valid JSON"), "{err}");
    let err = StealPlan::from_json(&plan.to_json().replace("\"version\":1", "\"version\":9"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("version 9"), "{err}");
}
