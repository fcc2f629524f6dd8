//! Merging several matching configs into one deterministic plan.

mod common;

use common::*;
use proptest::prelude::*;
use tls_steal_crds::{ConfigSource, build_plan};

fn configs() -> Vec<ConfigSource> {
    vec![
        ConfigSource::namespaced("ns", "b-web", spec(Some("deploy/web*"), &[443, 8443], "b")),
        ConfigSource::namespaced("ns", "a-web", spec(Some("*/web"), &[443], "a")),
        ConfigSource::cluster("all", spec(None, &[8443, 9443], "cluster")),
        // Applies to another namespace only: ignored.
        ConfigSource::namespaced("other", "z", spec(None, &[1], "z")),
    ]
}

fn pod() -> tls_steal_crds::PodTarget {
    deployment_pod("web")
        .container("app", &[443, 8443, 9443])
        .target()
}

#[test]
fn overlapping_ports_merge_by_precedence() {
    let plan = build_plan(&pod(), "ns", &configs());
    assert_eq!(plan.port_numbers(), [443, 8443, 9443]);
    let by_port = |p| plan.port(p).unwrap().config.as_str();
    assert_eq!(
        by_port(443),
        "MirrordTlsStealConfig/ns/a-web",
        "namespaced, then by name"
    );
    assert_eq!(
        by_port(8443),
        "MirrordTlsStealConfig/ns/b-web",
        "namespaced before cluster"
    );
    assert_eq!(by_port(9443), "MirrordClusterTlsStealConfig/all");
    assert_eq!(
        plan.configs,
        [
            "MirrordTlsStealConfig/ns/a-web",
            "MirrordTlsStealConfig/ns/b-web",
            "MirrordClusterTlsStealConfig/all"
        ]
    );
    let discarded: Vec<_> = plan
        .discarded
        .iter()
        .map(|d| (d.port, d.config.as_str(), d.kept_by.as_str()))
        .collect();
    assert_eq!(
        discarded,
        [
            (
                443,
                "MirrordTlsStealConfig/ns/b-web",
                "MirrordTlsStealConfig/ns/a-web"
            ),
            (
                8443,
                "MirrordClusterTlsStealConfig/all",
                "MirrordTlsStealConfig/ns/b-web"
            ),
        ]
    );
    assert!(
        plan.discarded[0]
            .reason
            .contains("already configured by MirrordTlsStealConfig/ns/a-web")
    );
}

#[test]
fn renaming_nothing_keeps_hash_and_changing_a_path_changes_it() {
    let base = build_plan(&pod(), "ns", &configs());
    let mut changed = configs();
    changed[1].spec.ports[0]
        .agent_as_server
        .authentication
        .cert_pem = "/certs/new.crt".into();
    assert_ne!(build_plan(&pod(), "ns", &changed).hash, base.hash);
    assert_eq!(build_plan(&pod(), "ns", &configs()).hash, base.hash);
}

#[test]
fn duplicate_inside_one_config_keeps_first_and_reports() {
    let mut s = spec(None, &[443, 443], "dup");
    s.ports[1].agent_as_server.authentication.cert_pem = "/certs/second.crt".into();
    // Invalid configs are rejected as a whole, so the duplicate shows there too.
    let plan = build_plan(&pod(), "ns", &[ConfigSource::namespaced("ns", "dup", s)]);
    assert!(plan.is_empty());
    assert_eq!(plan.rejected.len(), 1);
    assert!(
        plan.rejected[0].errors[0].contains("spec.ports[1].port"),
        "{:?}",
        plan.rejected
    );
}

proptest! {
    #[test]
    fn any_input_order_gives_the_same_plan(perm in Just((0..4usize).collect::<Vec<_>>()).prop_shuffle()) {
        let base = configs();
        let shuffled: Vec<_> = perm.iter().map(|&i| base[i].clone()).collect();
        prop_assert_eq!(build_plan(&pod(), "ns", &shuffled), build_plan(&pod(), "ns", &base));
    }
}
