//! `tls-steal-webhook inject`, through the real binary and through the library.

use std::process::Command;

use serde_json::Value;

fn dir() -> String {
    format!("{}/tests/fixtures/inject", env!("CARGO_MANIFEST_DIR"))
}

fn names(containers: &Value) -> Vec<&str> {
    containers
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| c["name"].as_str().unwrap())
        .collect()
}

#[test]
fn binary_injects_the_deployment_template_only() {
    let out = Command::new(env!("CARGO_BIN_EXE_tls-steal-webhook"))
        .args([
            "inject",
            "-f",
            &format!("{}/deployment.yaml", dir()),
            "--configs",
            &format!("{}/configs", dir()),
        ])
        .args([
            "--sidecar-image",
            "sidecar:test",
            "--sidecar-mode",
            "native",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap();
    assert_eq!(docs.len(), 3, "{text}");
    let tpl = &docs[0]["spec"]["template"];
    assert_eq!(
        names(&tpl["spec"]["initContainers"]),
        ["tls-steal-init", "tls-steal-proxy"]
    );
    assert_eq!(names(&tpl["spec"]["containers"]), ["app"]);
    let proxy = &tpl["spec"]["initContainers"][1];
    assert_eq!(proxy["image"], "sidecar:test");
    assert_eq!(proxy["restartPolicy"], "Always");
    assert_eq!(proxy["volumeMounts"][0]["mountPath"], "/etc/tls");
    assert_eq!(proxy["volumeMounts"][0]["readOnly"], true);
    let status: Value = serde_json::from_str(
        tpl["metadata"]["annotations"]["tls-steal.io/status"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(status["configs"][0], "MirrordTlsStealConfig/shop/web");
    // The rest of the Deployment is kept as written.
    assert_eq!(docs[0]["spec"]["replicas"], 2);
    // The Service and the unmatched Pod are printed unchanged.
    assert_eq!(docs[1]["kind"], "Service");
    assert!(docs[2]["spec"].get("initContainers").is_none());
    assert!(docs[2]["metadata"].get("annotations").is_none());
}

#[test]
fn binary_classic_mode_and_json_output() {
    let out = Command::new(env!("CARGO_BIN_EXE_tls-steal-webhook"))
        .args([
            "inject",
            "-f",
            &format!("{}/deployment.yaml", dir()),
            "--configs",
            &format!("{}/configs", dir()),
        ])
        .args(["--sidecar-mode", "classic", "-o", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let tpl = &v["items"][0]["spec"]["template"]["spec"];
    assert_eq!(names(&tpl["initContainers"]), ["tls-steal-init"]);
    assert_eq!(names(&tpl["containers"]), ["tls-steal-proxy", "app"]);
}

#[test]
fn workloads_of_every_kind_get_their_own_target_path() {
    use tls_steal_crds::{ConfigSource, TlsStealSpec};
    use tls_steal_webhook::{DocResult, Settings, inject_document, load_configs};

    let configs =
        load_configs(std::path::Path::new(&format!("{}/configs", dir())), "shop").unwrap();
    assert_eq!(configs.len(), 1);
    let spec: TlsStealSpec = configs[0].spec.clone();
    let settings = Settings::default();
    for (kind, prefix, template) in [
        ("StatefulSet", "statefulset", "/spec/template"),
        ("DaemonSet", "daemonset", "/spec/template"),
        ("Job", "job", "/spec/template"),
        ("CronJob", "cronjob", "/spec/jobTemplate/spec/template"),
    ] {
        let cfg = ConfigSource::namespaced(
            "shop",
            "c",
            TlsStealSpec {
                target_path: Some(format!("{prefix}/w")),
                ..spec.clone()
            },
        );
        let mut tpl = serde_json::json!({"spec": {"containers": [{"name": "app", "image": "x", "ports": [{"containerPort": 8443}]}]}});
        let mut doc = serde_json::json!({"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": "w", "namespace": "shop"}});
        // Build the nested template location.
        let parts: Vec<&str> = template.trim_start_matches('/').split('/').collect();
        for p in parts.iter().rev() {
            tpl = serde_json::json!({ *p: tpl });
        }
        json_merge(&mut doc, tpl);
        assert_eq!(
            inject_document(&mut doc, "shop", std::slice::from_ref(&cfg), &settings).unwrap(),
            DocResult::Injected,
            "{kind}"
        );
        let t = doc.pointer(template).unwrap();
        assert_eq!(
            names(&t["spec"]["initContainers"]),
            ["tls-steal-init", "tls-steal-proxy"],
            "{kind}"
        );
        // The same config does not apply to another kind's path.
        let mut other = doc.clone();
        other["kind"] = "Deployment".into();
        if kind != "CronJob" {
            other.pointer_mut(template).unwrap()["metadata"] = serde_json::json!({});
            other.pointer_mut(template).unwrap()["spec"]["initContainers"] = Value::Null;
            assert_eq!(
                inject_document(&mut other, "shop", &[cfg], &settings).unwrap(),
                DocResult::Skipped("no_matching_config"),
                "{kind}"
            );
        }
    }
}

fn json_merge(a: &mut Value, b: Value) {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                json_merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (a, b) => *a = b,
    }
}
