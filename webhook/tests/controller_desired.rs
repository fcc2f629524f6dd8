//! Pure parts of the rollout controller: desired hash, decision, patch shape, config status.
//!
//! Over 400 lines: independent table-like tests of the controller's pure functions.

mod controller_common;

/// Named so that `cargo nextest run controller` selects these tests.
mod controller {

    use crate::controller_common::*;
    use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
    use k8s_openapi::api::core::v1::Pod;
    use serde_json::{Value, json};
    use tls_steal_crds::status::{Condition, TlsStealConfigStatus};
    use tls_steal_crds::{ConfigSource, Owner, OwnerKind, PodTarget, build_plan};
    use tls_steal_webhook::controller::{
        Adoption, Decision, NoPlan, Workload, WorkloadKind, WorkloadState, adoption,
        adoption_patch, current_hash, hash_annotation_present, hash_patch, hash_recorded,
        live_pod_hashes, pod_plan_hash, rollout_patch, workload_current_hash,
    };
    use tls_steal_webhook::controller::{ConfigInput, SyncCounts, compute_statuses};
    use tls_steal_webhook::{Settings, SkipReason};

    fn state(d: &Deployment, opted_in: bool) -> WorkloadState {
        WorkloadState::of(d, opted_in, &Settings::default())
    }

    fn sources(specs: &[(&str, Option<&str>, &[u16])]) -> Vec<ConfigSource> {
        specs
            .iter()
            .map(|(name, target, ports)| {
                ConfigSource::from(&ns_config(NS, name, spec(*target, ports)))
            })
            .collect()
    }

    #[test]
    fn desired_hash_is_the_webhook_merge_of_the_template() {
        let d = deployment("web", json!({}), Value::Null);
        let configs = sources(&[("a", Some("deploy/web"), &[443])]);
        let s = state(&d, true);
        assert_eq!(s.id(), "apps/Deployment/web");
        assert_eq!(s.target.owners, [Owner::new(OwnerKind::Deployment, "web")]);
        let plan = s.desired_plan(&configs);
        assert_eq!(plan.hash, expected_hash(&d, &configs));
        assert_eq!(plan.port_numbers(), [443]);
        assert_eq!(plan.ports[0].container, "app");

        // Configs for another workload, another namespace or a container path.
        assert_eq!(
            s.desired_plan(&sources(&[("b", Some("deploy/other"), &[443])]))
                .hash,
            ""
        );
        let elsewhere = ConfigSource::from(&ns_config("other-ns", "c", spec(None, &[443])));
        assert_eq!(s.desired_plan(&[elsewhere]).hash, "");
        let by_container = sources(&[("d", Some("deploy/web/container/app"), &[443])]);
        assert_eq!(
            s.desired_plan(&by_container).hash,
            expected_hash(&d, &by_container)
        );
        assert_ne!(s.desired_plan(&by_container).hash, "");
    }

    #[test]
    fn the_owner_path_follows_the_workload_kind() {
        let sts: StatefulSet = serde_json::from_value(json!({
            "metadata": {"name": "db", "namespace": NS},
            "spec": {"selector": {}, "serviceName": "db", "template": {
                "metadata": {"labels": {"app": "db"}},
                "spec": {"containers": [{"name": "db", "ports": [{"containerPort": 5432}]}]}}}
        }))
        .unwrap();
        let s = WorkloadState::of(&sts, true, &Settings::default());
        assert_eq!(s.kind, WorkloadKind::StatefulSet);
        assert_eq!(s.id(), "apps/StatefulSet/db");
        let target = PodTarget::from_template(
            &sts.spec.as_ref().unwrap().template,
            vec![Owner::new(OwnerKind::StatefulSet, "db")],
        );
        let sts_config = sources(&[("x", Some("statefulset/db"), &[5432])]);
        let plan = s.desired_plan(&sts_config);
        assert_eq!(plan.hash, build_plan(&target, NS, &sts_config).hash);
        assert!(!plan.hash.is_empty());
        assert_eq!(
            s.desired_plan(&sources(&[("y", Some("deploy/db"), &[5432])]))
                .hash,
            ""
        );
    }

    #[test]
    fn pods_the_webhook_skips_want_no_plan() {
        let configs = sources(&[("a", None, &[443])]);
        let plain = deployment("web", json!({}), Value::Null);
        assert_eq!(state(&plain, true).no_plan, None);

        let not_opted_in = state(&plain, false);
        assert_eq!(not_opted_in.no_plan, Some(NoPlan::NamespaceNotOptedIn));
        assert_eq!(not_opted_in.desired_plan(&configs).hash, "");

        let mut opted_out = plain.clone();
        let tpl = &mut opted_out.spec.as_mut().unwrap().template;
        tpl.metadata
            .as_mut()
            .unwrap()
            .labels
            .as_mut()
            .unwrap()
            .insert("tls-steal.io/inject".into(), "false".into());
        let s = state(&opted_out, true);
        assert_eq!(s.no_plan, Some(NoPlan::Pod(SkipReason::OptOut)));
        assert_eq!(s.desired_plan(&configs).hash, "");

        // `plain` with its pod spec changed by `edit`.
        let with_spec = |edit: &dyn Fn(&mut k8s_openapi::api::core::v1::PodSpec)| {
            let mut d = plain.clone();
            edit(d.spec.as_mut().unwrap().template.spec.as_mut().unwrap());
            d
        };
        let host = with_spec(&|s| s.host_network = Some(true));
        assert_eq!(
            state(&host, true).no_plan,
            Some(NoPlan::Pod(SkipReason::HostNetwork))
        );

        // A container declaring the proxy's admin port: the webhook would skip the pods, so a
        // config change must not roll the workload out.
        let clash = with_spec(&|s| {
            let admin = serde_json::from_value(json!({"containerPort": 15401})).unwrap();
            s.containers[0].ports.as_mut().unwrap().push(admin);
        });
        let s = state(&clash, true);
        assert_eq!(s.no_plan, Some(NoPlan::Pod(SkipReason::PortConflict)));
        assert_eq!(s.desired_plan(&configs).hash, "");
        assert_eq!(s.decide(""), Decision::InSync);
    }

    #[test]
    fn decisions() {
        let configs = sources(&[("a", None, &[443])]);
        let fresh = deployment("web", Value::Null, Value::Null);
        let h = expected_hash(&fresh, &configs);

        let s = state(&fresh, true);
        assert_eq!(s.current_hash, "");
        assert_eq!(s.decide(&h), Decision::Rollout);
        assert_eq!(s.decide(""), Decision::InSync);

        let synced = deployment("web", json!({"tls-steal.io/config-hash": h}), Value::Null);
        assert_eq!(state(&synced, true).decide(&h), Decision::InSync);
        assert_eq!(state(&synced, true).decide(""), Decision::Rollout);

        let blocked = deployment(
            "web",
            json!({"tls-steal.io/config-hash": "old"}),
            json!({"tls-steal.io/rollout": "False"}),
        );
        assert!(state(&blocked, true).rollout_disabled);
        assert_eq!(state(&blocked, true).decide(&h), Decision::RolloutDisabled);
        assert_eq!(state(&blocked, true).decide("old"), Decision::InSync);
        let allowed = deployment("web", json!({}), json!({"tls-steal.io/rollout": "true"}));
        assert!(!state(&allowed, true).rollout_disabled);
    }

    #[test]
    fn patch_shapes() {
        let template = |v: Value| -> k8s_openapi::api::core::v1::PodTemplateSpec {
            serde_json::from_value(v).unwrap()
        };
        let json_of = |p: json_patch::Patch| serde_json::to_value(p).unwrap();
        let with = template(json!({"metadata": {"annotations": {"a": "b"}}}));
        assert_eq!(current_hash(Some(&with)), "");
        assert_eq!(
            json_of(hash_patch(Some(&with), Some("42"), "abc")),
            json!([
                {"op": "test", "path": "/metadata/resourceVersion", "value": "42"},
                {"op": "add", "path": "/spec/template/metadata/annotations/tls-steal.io~1config-hash", "value": "abc"}
            ])
        );
        let without = template(json!({"metadata": {"labels": {"a": "b"}}}));
        assert_eq!(
            json_of(hash_patch(Some(&without), None, "abc")),
            json!([{"op": "add", "path": "/spec/template/metadata/annotations",
                "value": {"tls-steal.io/config-hash": "abc"}}])
        );
        let bare = template(json!({}));
        assert_eq!(
            json_of(hash_patch(Some(&bare), None, "")),
            json!([{"op": "add", "path": "/spec/template/metadata",
                "value": {"annotations": {"tls-steal.io/config-hash": ""}}}])
        );
        // The patch really applies to a Deployment of each shape.
        for (tpl, rv) in [
            (json!({"metadata": {"annotations": {"a": "b"}}}), "42"),
            (json!({}), "42"),
        ] {
            let mut doc = json!({"metadata": {"resourceVersion": rv}, "spec": {"template": tpl}});
            let t = template(doc["spec"]["template"].clone());
            json_patch::patch(&mut doc, &hash_patch(Some(&t), Some(rv), "h1")).unwrap();
            assert_eq!(
                doc["spec"]["template"]["metadata"]["annotations"]["tls-steal.io/config-hash"],
                "h1"
            );
            // A stale resourceVersion fails the test op.
            let mut stale = doc.clone();
            stale["metadata"]["resourceVersion"] = json!("43");
            let t = template(stale["spec"]["template"].clone());
            assert!(json_patch::patch(&mut stale, &hash_patch(Some(&t), Some(rv), "h2")).is_err());
        }
    }

    fn cond<'a>(s: &'a TlsStealConfigStatus, t: &str) -> &'a Condition {
        s.conditions.iter().find(|c| c.type_ == t).unwrap()
    }

    #[test]
    fn status_matches_conflicts_validity_and_sync() {
        let web = deployment("web", json!({}), Value::Null);
        let api = deployment("api", json!({}), Value::Null);
        let mut other_ns = deployment("web", json!({}), Value::Null);
        other_ns.metadata.namespace = Some("quiet".into());
        let mut workloads = vec![
            state(&web, true),
            state(&api, true),
            WorkloadState::of(&other_ns, false, &Settings::default()),
        ];
        let a = ConfigSource::from(&ns_config(NS, "a", spec(Some("deploy/*"), &[443])));
        let b = ConfigSource::from(&ns_config(NS, "b", spec(Some("deploy/web"), &[443, 8443])));
        let mut bad_spec = spec(None, &[443]);
        bad_spec.target_path = Some("nope/x".into());
        let bad = ConfigSource::from(&ns_config(NS, "bad", bad_spec));
        let cluster = ConfigSource::from(&cluster_config("all", spec(None, &[443])));
        let all = [a.clone(), b.clone(), bad.clone(), cluster.clone()];
        // `web` already carries its plan, `api` does not (and refuses rollouts).
        workloads[0].current_hash = workloads[0].desired_plan(&all).hash;
        workloads[1].rollout_disabled = true;

        let inputs: Vec<ConfigInput<'_>> = all
            .iter()
            .map(|s| ConfigInput {
                source: s,
                generation: Some(4),
                previous: None,
            })
            .collect();
        let (statuses, counts) = compute_statuses(&inputs, &workloads, "2026-01-01T00:00:00Z");
        assert_eq!(
            counts,
            SyncCounts {
                in_sync: 2,
                out_of_sync: 1,
                disabled: 1
            }
        );

        let [sa, sb, sbad, scluster] = &statuses[..] else {
            panic!()
        };
        assert_eq!(sa.observed_generation, Some(4));
        assert_eq!(
            sa.matched_workloads,
            ["apps/Deployment/api", "apps/Deployment/web"]
        );
        assert_eq!(sa.matched_count, 2);
        assert!(sa.port_conflicts.is_empty());
        assert_eq!(cond(sa, "Valid").status, "True");
        let rolled = cond(sa, "RolledOut");
        assert_eq!(rolled.status, "False");
        assert_eq!(rolled.reason, "RolloutDisabled");
        assert!(rolled.message.contains("apps/Deployment/api"));
        assert!(!rolled.message.contains("apps/Deployment/web"));

        // b loses 443 on web to a (same kind, name order), keeps 8443.
        assert_eq!(sb.matched_workloads, ["apps/Deployment/web"]);
        assert_eq!(sb.conflict_count, 1);
        assert_eq!(sb.port_conflicts[0].port, 443);
        assert_eq!(sb.port_conflicts[0].workload, "apps/Deployment/web");
        assert_eq!(sb.port_conflicts[0].kept_by, "MirrordTlsStealConfig/apps/a");
        assert_eq!(cond(sb, "RolledOut").status, "True");

        // The cluster config loses 443 on both workloads; the unlabelled namespace is not matched.
        assert_eq!(scluster.matched_count, 2);
        assert_eq!(scluster.conflict_count, 2);

        let v = cond(sbad, "Valid");
        assert_eq!(
            (v.status.as_str(), v.reason.as_str()),
            ("False", "InvalidSpec")
        );
        assert!(v.message.contains("spec.targetPath"), "{}", v.message);
        assert_eq!(
            v.last_transition_time.as_deref(),
            Some("2026-01-01T00:00:00Z")
        );

        // Transition times survive recomputation when the status did not flip.
        let previous = statuses.clone();
        let inputs2: Vec<ConfigInput<'_>> = all
            .iter()
            .zip(&previous)
            .map(|(s, p)| ConfigInput {
                source: s,
                generation: Some(4),
                previous: Some(p),
            })
            .collect();
        workloads[1].current_hash = workloads[1].desired_plan(&all).hash;
        let (again, counts) = compute_statuses(&inputs2, &workloads, "2026-02-02T00:00:00Z");
        assert_eq!(counts.out_of_sync, 0);
        assert_eq!(
            cond(&again[2], "Valid").last_transition_time.as_deref(),
            Some("2026-01-01T00:00:00Z")
        );
        let flipped = cond(&again[0], "RolledOut");
        assert_eq!(flipped.status, "True");
        assert_eq!(
            flipped.last_transition_time.as_deref(),
            Some("2026-02-02T00:00:00Z")
        );
        assert_eq!(again[1], statuses[1].clone());
    }

    #[test]
    fn duplicates_inside_one_config_show_as_port_conflicts() {
        let web = deployment("web", json!({}), Value::Null);
        let workloads = vec![state(&web, true)];
        let mut dup = spec(Some("deploy/web"), &[443, 8443, 443]);
        dup.ports[2].agent_as_server.authentication.cert_pem = "/other/tls.crt".into();
        let d = ConfigSource::from(&ns_config(NS, "dup", dup));
        let inputs = [ConfigInput {
            source: &d,
            generation: Some(1),
            previous: None,
        }];
        let (statuses, _) = compute_statuses(&inputs, &workloads, "2026-01-01T00:00:00Z");
        let s = &statuses[0];
        let v = cond(s, "Valid");
        assert_eq!(
            v.status, "True",
            "a duplicate port is discarded, not an error"
        );
        assert!(
            v.message.contains("spec.ports[2] (port 443)")
                && v.message.contains("the first entry is kept"),
            "{}",
            v.message
        );
        assert_eq!(s.conflict_count, 1);
        assert_eq!(s.port_conflicts[0].port, 443);
        assert_eq!(s.port_conflicts[0].workload, "apps/Deployment/web");
        assert_eq!(
            s.port_conflicts[0].kept_by,
            "MirrordTlsStealConfig/apps/dup"
        );
        assert_eq!(
            workloads[0]
                .desired_plan(std::slice::from_ref(&d))
                .port_numbers(),
            [443, 8443]
        );
    }

    #[test]
    fn adoption_judges_the_live_pods() {
        let h = "0123456789abcdef".to_owned();
        let other = "fedcba9876543210".to_owned();
        assert_eq!(
            adoption(&h, &[h.clone(), h.clone()], false),
            Adoption::InSync
        );
        assert_eq!(
            adoption(&h, &[h.clone(), String::new()], false),
            Adoption::Rollout
        );
        assert_eq!(adoption(&h, &[other], false), Adoption::Rollout);
        assert_eq!(adoption(&h, &[], false), Adoption::WaitForPods);
        assert_eq!(adoption(&h, &[], true), Adoption::InSync);
        assert_eq!(adoption(&h, &[String::new()], true), Adoption::Rollout);
    }

    #[test]
    fn pod_hashes_come_from_the_status_annotation() {
        let pod_of = |v: Value| -> Pod { serde_json::from_value(v).unwrap() };
        assert_eq!(pod_plan_hash(&pod_of(pod("web", "a", Some("abc")))), "abc");
        assert_eq!(pod_plan_hash(&pod_of(pod("web", "b", None))), "");
        let mut garbled = pod("web", "c", None);
        garbled["metadata"]["annotations"]["tls-steal.io/status"] = json!("not json");
        assert_eq!(pod_plan_hash(&pod_of(garbled)), "");

        let mut failed = pod("web", "d", None);
        failed["status"]["phase"] = json!("Succeeded");
        let mut deleting = pod("web", "e", None);
        deleting["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        let pods: Vec<Pod> = [pod("web", "a", Some("abc")), failed, deleting]
            .into_iter()
            .map(pod_of)
            .collect();
        assert_eq!(live_pod_hashes(&pods), ["abc"]);
    }

    #[test]
    fn annotation_presence_and_selectors() {
        let absent = deployment("web", json!({"other": "x"}), Value::Null);
        let no_map = deployment("web", Value::Null, Value::Null);
        let empty = deployment("web", json!({"tls-steal.io/config-hash": ""}), Value::Null);
        assert!(!hash_annotation_present(absent.template().as_deref()));
        assert!(!hash_annotation_present(no_map.template().as_deref()));
        assert!(hash_annotation_present(empty.template().as_deref()));

        assert_eq!(absent.pod_selector().as_deref(), Some("app=web"));
        let with_exprs: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "x"},
            "spec": {"selector": {"matchLabels": {"app": "x"},
                                  "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]},
                                                       {"key": "canary", "operator": "DoesNotExist"}]},
                     "template": {}}
        }))
        .unwrap();
        assert_eq!(
            with_exprs.pod_selector().as_deref(),
            Some("app=x,tier in (a,b),!canary")
        );
        // Selecting every pod, or an unknown operator: the pods cannot be judged.
        let everything: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "x"}, "spec": {"selector": {}, "template": {}}
        }))
        .unwrap();
        assert_eq!(everything.pod_selector(), None);
        let bad: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "x"},
            "spec": {"selector": {"matchExpressions": [{"key": "a", "operator": "Bogus"}]}, "template": {}}
        }))
        .unwrap();
        assert_eq!(bad.pod_selector(), None);
    }

    #[test]
    fn current_hash_prefers_the_template_then_the_adoption_record() {
        let adopted = deployment(
            "web",
            json!({}),
            json!({"tls-steal.io/adopted-hash": "abc"}),
        );
        assert_eq!(
            workload_current_hash(&adopted.metadata, adopted.template().as_deref()),
            "abc"
        );
        assert!(hash_recorded(
            &adopted.metadata,
            adopted.template().as_deref()
        ));
        assert_eq!(state(&adopted, true).current_hash, "abc");
        // Counted as in sync by the status and the gauges.
        let configs = sources(&[("a", None, &[443])]);
        let h = expected_hash(&adopted, &configs);
        let matching = deployment("web", json!({}), json!({"tls-steal.io/adopted-hash": h}));
        let inputs: Vec<ConfigInput<'_>> = configs
            .iter()
            .map(|c| ConfigInput {
                source: c,
                generation: Some(1),
                previous: None,
            })
            .collect();
        let (_, counts) = compute_statuses(&inputs, &[state(&matching, true)], "now");
        assert_eq!(counts.in_sync, 1);
        assert_eq!(counts.out_of_sync, 0);

        // A present template annotation (even "") wins over the record.
        let both = deployment(
            "web",
            json!({"tls-steal.io/config-hash": ""}),
            json!({"tls-steal.io/adopted-hash": "abc"}),
        );
        assert_eq!(
            workload_current_hash(&both.metadata, both.template().as_deref()),
            ""
        );
        let none = deployment("web", json!({}), json!({"x": "y"}));
        assert_eq!(
            workload_current_hash(&none.metadata, none.template().as_deref()),
            ""
        );
        assert!(!hash_recorded(&none.metadata, none.template().as_deref()));

        let json_of = |p: json_patch::Patch| serde_json::to_value(p).unwrap();
        assert_eq!(
            json_of(adoption_patch(&none.metadata, "abc")),
            json!([
                {"op": "test", "path": "/metadata/resourceVersion", "value": "100"},
                {"op": "add", "path": "/metadata/annotations/tls-steal.io~1adopted-hash", "value": "abc"}
            ])
        );
        let bare = deployment("web", json!({}), Value::Null);
        assert_eq!(
            json_of(adoption_patch(&bare.metadata, "abc"))[1],
            json!({"op": "add", "path": "/metadata/annotations",
                   "value": {"tls-steal.io/adopted-hash": "abc"}})
        );
        // A rollout removes the record; without one it is the plain hash patch.
        assert_eq!(
            json_of(rollout_patch(
                &adopted.metadata,
                adopted.template().as_deref(),
                ""
            ))[2],
            json!({"op": "remove", "path": "/metadata/annotations/tls-steal.io~1adopted-hash"})
        );
        assert_eq!(
            json_of(rollout_patch(
                &none.metadata,
                none.template().as_deref(),
                "abc"
            )),
            json_of(hash_patch(none.template().as_deref(), Some("100"), "abc"))
        );
    }

    #[test]
    fn workloads_wanting_no_pods() {
        let mut d = deployment("web", json!({}), Value::Null);
        assert!(!d.expects_no_pods());
        d.spec.as_mut().unwrap().replicas = Some(0);
        assert!(d.expects_no_pods());
        let ds = |status: Value| -> DaemonSet {
            serde_json::from_value(json!({
                "metadata": {"name": "x", "generation": 2},
                "spec": {"selector": {"matchLabels": {"app": "x"}}, "template": {}},
                "status": status
            }))
            .unwrap()
        };
        // A new DaemonSet has no status yet: its pods may still come.
        assert!(!ds(Value::Null).expects_no_pods());
        let stale = json!({"currentNumberScheduled": 0, "desiredNumberScheduled": 0,
                           "numberMisscheduled": 0, "numberReady": 0, "observedGeneration": 1});
        assert!(!ds(stale).expects_no_pods());
        let current = json!({"currentNumberScheduled": 0, "desiredNumberScheduled": 0,
                             "numberMisscheduled": 0, "numberReady": 0, "observedGeneration": 2});
        assert!(ds(current).expects_no_pods());
    }
}
