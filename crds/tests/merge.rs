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
    // The feature description: "The same port cannot be configured multiple times (extra
    // entries are discarded)" -- inside one config as across configs.
    let mut s = spec(None, &[443, 8443, 443, 443], "dup");
    s.ports[2].agent_as_server.authentication.cert_pem = "/certs/second.crt".into();
    assert!(s.validate().is_ok(), "{:?}", s.validate());
    assert_eq!(s.duplicate_ports(), [(2, 443), (3, 443)]);
    let plan = build_plan(
        &pod(),
        "ns",
        &[ConfigSource::namespaced("ns", "dup", s.clone())],
    );
    assert!(plan.rejected.is_empty());
    assert_eq!(plan.port_numbers(), [443, 8443]);
    assert_eq!(
        plan.port(443)
            .unwrap()
            .agent_as_server
            .authentication
            .cert_pem,
        s.ports[0].agent_as_server.authentication.cert_pem,
        "the first entry is kept"
    );
    let discarded: Vec<_> = plan
        .discarded
        .iter()
        .map(|d| (d.port, d.config.as_str(), d.kept_by.as_str()))
        .collect();
    let id = "MirrordTlsStealConfig/ns/dup";
    assert_eq!(discarded, [(443, id, id), (443, id, id)]);
    assert!(
        plan.discarded[0]
            .reason
            .contains("listed twice in MirrordTlsStealConfig/ns/dup; the first entry is kept"),
        "{}",
        plan.discarded[0].reason
    );
    // The discarded entries do not count in the hash: the plan is that of the first entries.
    let first_only = spec(None, &[443, 8443], "dup");
    assert_eq!(
        plan.hash,
        build_plan(
            &pod(),
            "ns",
            &[ConfigSource::namespaced("ns", "dup", first_only)]
        )
        .hash
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
