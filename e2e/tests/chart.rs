//! The Helm chart: `helm lint` is clean and `helm template` renders the objects the design asks
//! for (webhook configuration, least-privilege RBAC, a hardened 2-replica Deployment, PDB).
//! helm comes from `e2e/scripts/get-helm.sh` (cached under /var/cache/tls-steal-e2e) when `$HELM`
//! is not set.
//!
//! Over 400 lines: one test per chart concern over the same `helm template` helpers.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn chart() -> PathBuf {
    root().join("chart")
}

fn helm() -> &'static Path {
    static HELM: OnceLock<PathBuf> = OnceLock::new();
    HELM.get_or_init(|| {
        if let Some(h) = std::env::var_os("HELM") {
            return h.into();
        }
        let script = root().join("e2e/scripts/get-helm.sh");
        let mut cmd = Command::new("bash");
        cmd.arg(&script);
        // Not root: keep the download in the target directory instead of /var/cache.
        let cache = Path::new("/var/cache/tls-steal-e2e");
        if std::fs::create_dir_all(cache).is_err() || tempfile_probe(cache).is_err() {
            cmd.env("E2E_CACHE", root().join("target/tls-steal-e2e-cache"));
        }
        let out = cmd.output().expect("running get-helm.sh");
        assert!(
            out.status.success(),
            "get-helm.sh failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    })
}

fn tempfile_probe(dir: &Path) -> std::io::Result<()> {
    let p = dir.join(".write-probe");
    std::fs::write(&p, b"")?;
    std::fs::remove_file(p)
}

fn run_helm(args: &[&str]) -> (bool, String) {
    let out = Command::new(helm())
        .args(args)
        .output()
        .expect("running helm");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// `helm template` with `--set` values; the rendered objects.
fn render(sets: &[&str]) -> Vec<Value> {
    let chart = chart();
    let mut args = vec![
        "template",
        "tls-steal",
        chart.to_str().unwrap(),
        "--namespace",
        "tls-steal",
    ];
    for s in sets {
        args.extend(["--set", s]);
    }
    let (ok, text) = run_helm(&args);
    assert!(ok, "helm template {sets:?} failed:\n{text}");
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text).expect("rendered YAML parses");
    docs.into_iter().filter(|d| d.is_object()).collect()
}

/// Objects of the chart that are not the webhook's: the controller's and the roles to bind.
const NOT_THE_WEBHOOK: [&str; 3] = ["tls-steal-controller", "tls-steal-user", "tls-steal-viewer"];

/// The webhook's one object of `kind`.
fn find<'a>(objs: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = objs
        .iter()
        .filter(|o| {
            o["kind"] == kind && !NOT_THE_WEBHOOK.iter().any(|n| o["metadata"]["name"] == *n)
        })
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected exactly one {kind}, got {}",
        found.len()
    );
    found[0]
}

/// The one object of `kind` named `name`.
fn find_named<'a>(objs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objs.iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

/// The Secrets a (Cluster)Role grants by name.
fn named_secrets(role: &Value) -> BTreeSet<String> {
    role["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| strs(&r["resources"]).contains("secrets") && r.get("resourceNames").is_some())
        .flat_map(|r| strs(&r["resourceNames"]))
        .collect()
}

fn strs(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(String::from))
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Verbs granted on `group`/`resource` by a (Cluster)Role, and whether any of those rules is
/// limited by resourceNames.
fn verbs(role: &Value, group: &str, resource: &str) -> (BTreeSet<String>, bool) {
    let mut verbs = BTreeSet::new();
    let mut named = false;
    for rule in role["rules"].as_array().into_iter().flatten() {
        if strs(&rule["apiGroups"]).contains(group) && strs(&rule["resources"]).contains(resource) {
            verbs.extend(strs(&rule["verbs"]));
            named |= rule.get("resourceNames").is_some();
        }
    }
    (verbs, named)
}

#[test]
fn lint_is_clean() {
    let (ok, text) = run_helm(&["lint", "--strict", chart().to_str().unwrap()]);
    assert!(ok, "helm lint failed:\n{text}");
    assert!(text.contains("0 chart(s) failed"), "{text}");
    assert!(
        !text.contains("[WARNING]") && !text.contains("[ERROR]"),
        "{text}"
    );
}

#[test]
fn mutating_webhook_configuration() {
    let objs = render(&[]);
    let mwc = find(&objs, "MutatingWebhookConfiguration");
    let hooks = mwc["webhooks"].as_array().unwrap();
    assert_eq!(hooks.len(), 2);
    // StealSession admission: fails closed, creates and updates, its own path.
    let s = &hooks[1];
    assert_eq!(s["name"], "sessions.tls-steal.io");
    assert_eq!(s["failurePolicy"], "Fail");
    assert_eq!(s["clientConfig"]["service"]["path"], "/sessions");
    assert_eq!(
        strs(&s["rules"][0]["operations"]),
        set(&["CREATE", "UPDATE"])
    );
    assert_eq!(strs(&s["rules"][0]["resources"]), set(&["stealsessions"]));
    assert_eq!(strs(&s["rules"][0]["apiGroups"]), set(&["tls-steal.io"]));
    let w = &hooks[0];
    assert_eq!(w["failurePolicy"], "Ignore", "fails open by default");
    assert_eq!(w["reinvocationPolicy"], "IfNeeded");
    assert_eq!(w["timeoutSeconds"], 5);
    assert_eq!(w["sideEffects"], "None");
    assert_eq!(strs(&w["admissionReviewVersions"]), set(&["v1"]));
    assert_eq!(
        w["namespaceSelector"]["matchLabels"]["tls-steal-injection"],
        "enabled"
    );
    // Pod Security "baseline"/"restricted" forbid tls-steal-init's NET_ADMIN/NET_RAW: such
    // namespaces are not injected rather than having their pods rejected.
    let ns_exprs = w["namespaceSelector"]["matchExpressions"]
        .as_array()
        .unwrap();
    assert!(
        ns_exprs
            .iter()
            .any(|e| e["key"] == "pod-security.kubernetes.io/enforce"
                && e["operator"] == "NotIn"
                && strs(&e["values"]) == set(&["baseline", "restricted"])),
        "{ns_exprs:?}"
    );
    let exprs = w["objectSelector"]["matchExpressions"].as_array().unwrap();
    let excludes = |key: &str, value: &str| {
        exprs.iter().any(|e| {
            e["key"] == key && e["operator"] == "NotIn" && strs(&e["values"]).contains(value)
        })
    };
    assert!(
        excludes("tls-steal.io/inject", "false"),
        "opted-out pods: {exprs:?}"
    );
    assert!(
        excludes("app.kubernetes.io/name", "tls-steal-webhook"),
        "own pods: {exprs:?}"
    );
    let rules = w["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 1);
    assert_eq!(strs(&rules[0]["operations"]), set(&["CREATE"]));
    assert_eq!(strs(&rules[0]["resources"]), set(&["pods"]));
    assert_eq!(strs(&rules[0]["apiGroups"]), set(&[""]));
    let svc = &w["clientConfig"]["service"];
    assert_eq!(svc["path"], "/mutate");
    assert_eq!(svc["namespace"], "tls-steal");
    let service = find(&objs, "Service");
    assert_eq!(svc["name"], service["metadata"]["name"]);
    assert_eq!(svc["port"], service["spec"]["ports"][0]["port"]);
    assert!(
        w["clientConfig"].get("caBundle").is_none(),
        "selfManaged: the controller patches caBundle"
    );

    // The webhook's own pods carry the label the objectSelector excludes.
    let deploy = find(&objs, "Deployment");
    assert_eq!(
        deploy["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"],
        "tls-steal-webhook"
    );

    let fail = render(&["webhook.failurePolicy=Fail"]);
    assert_eq!(
        find(&fail, "MutatingWebhookConfiguration")["webhooks"][0]["failurePolicy"],
        "Fail"
    );
}

#[test]
fn deployment_is_hardened_and_replicated() {
    let objs = render(&[]);
    let d = find(&objs, "Deployment");
    assert_eq!(d["spec"]["replicas"], 2);
    let pod = &d["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_ne!(pod["securityContext"]["runAsUser"], 0);
    let c = &pod["containers"][0];
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(strs(&sc["capabilities"]["drop"]), set(&["ALL"]));
    assert!(pod.get("hostNetwork").is_none());
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["readinessProbe"]["httpGet"]["scheme"], "HTTPS");
    let args = strs(&c["args"]);
    assert!(args.contains("serve"), "{args:?}");
    assert!(args.contains("--sidecar-mode=auto"), "{args:?}");
    assert!(
        args.contains("--session-authorization=required"),
        "{args:?}"
    );
    // Every certificate mode serves the mounted Secret's certificate and key, nothing more (a
    // selfManaged Secret also holds the CA's key).
    assert!(
        args.contains("--tls-cert-file=/etc/tls-steal/tls/tls.crt"),
        "{args:?}"
    );
    let tls = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "tls")
        .expect("the tls volume");
    assert_eq!(tls["secret"]["secretName"], "tls-steal-webhook-tls");
    assert_eq!(
        tls["secret"]["items"],
        serde_json::json!([{"key": "tls.crt", "path": "tls.crt"}, {"key": "tls.key", "path": "tls.key"}])
    );
    assert_eq!(
        pod["serviceAccountName"],
        find(&objs, "ServiceAccount")["metadata"]["name"]
    );

    let pdb = find(&objs, "PodDisruptionBudget");
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"],
        d["spec"]["selector"]["matchLabels"]
    );

    let custom = render(&[
        "sidecar.mode=classic",
        "image.sidecar.repository=local/sidecar",
        "image.sidecar.tag=dev",
        "image.sidecar.pullPolicy=Never",
        "image.webhook.repository=local/webhook",
        "image.webhook.tag=dev",
        "replicaCount=3",
        "sidecar.workers=3",
        "sessions.authorization=disabled",
        "sessions.publicKeys=AAAA_k-1",
    ]);
    let d = find(&custom, "Deployment");
    assert_eq!(d["spec"]["replicas"], 3);
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["image"], "local/webhook:dev");
    let args = strs(&c["args"]);
    for a in [
        "--sidecar-mode=classic",
        "--sidecar-image=local/sidecar:dev",
        "--image-pull-policy=Never",
        "--sidecar-drain-delay=3600",
        "--drain-delay=5",
        "--sidecar-max-connections=4096",
        "--sidecar-workers=3",
        "--session-authorization=disabled",
        "--session-keys=AAAA_k-1",
    ] {
        assert!(args.contains(a), "{a} missing from {args:?}");
    }
}

#[test]
fn rbac_is_least_privilege() {
    let objs = render(&[]);
    let cr = find_named(&objs, "ClusterRole", "tls-steal-webhook");
    let role = find(&objs, "Role");
    for r in [cr, role] {
        for rule in r["rules"].as_array().unwrap() {
            for field in ["apiGroups", "resources", "verbs"] {
                assert!(!strs(&rule[field]).contains("*"), "wildcard in {rule}");
            }
        }
    }
    let read = set(&["get", "list", "watch"]);
    // The webhook reads configs and owners; it writes no workload, config status or Lease.
    for kind in ["mirrordtlsstealconfigs", "mirrordclustertlsstealconfigs"] {
        assert_eq!(verbs(cr, "mirrord.metalbear.co", kind).0, read, "{kind}");
        let status = verbs(cr, "mirrord.metalbear.co", &format!("{kind}/status")).0;
        assert!(status.is_empty(), "{kind}/status: {status:?}");
    }
    assert!(verbs(cr, "", "pods").0.is_empty());
    assert_eq!(verbs(cr, "apps", "replicasets").0, set(&["get"]));
    for kind in ["deployments", "statefulsets", "daemonsets"] {
        assert!(verbs(cr, "apps", kind).0.is_empty(), "{kind}");
    }
    assert_eq!(verbs(cr, "batch", "jobs").0, set(&["get"]));
    // The controller's own account: the only one that patches workloads and writes status.
    let ccr = find_named(&objs, "ClusterRole", "tls-steal-controller");
    for kind in ["deployments", "statefulsets", "daemonsets"] {
        assert_eq!(
            verbs(ccr, "apps", kind).0,
            set(&["get", "list", "watch", "patch"]),
            "{kind}"
        );
    }
    assert_eq!(verbs(ccr, "", "pods").0, read);
    assert_eq!(verbs(ccr, "", "namespaces").0, read);
    assert!(verbs(ccr, "", "secrets").0.is_empty());
    // ... and the session ticket signer: StealSessions read and deleted, their status patched,
    // its key Secret and public keys ConfigMap by name in its namespace.
    assert_eq!(
        verbs(ccr, "tls-steal.io", "stealsessions").0,
        set(&["get", "list", "watch", "delete"])
    );
    assert_eq!(
        verbs(ccr, "tls-steal.io", "stealsessions/status").0,
        set(&["get", "patch"])
    );
    let crole = find_named(&objs, "Role", "tls-steal-controller");
    assert!(
        verbs(crole, "coordination.k8s.io", "leases")
            .0
            .contains("update")
    );
    assert_eq!(
        verbs(crole, "", "configmaps").0,
        set(&["get", "update", "create"])
    );
    let cb = find_named(&objs, "ClusterRoleBinding", "tls-steal-controller");
    assert_eq!(cb["subjects"][0]["name"], "tls-steal-controller");
    assert!(verbs(cr, "", "events").0.contains("create"));
    assert!(
        verbs(cr, "", "secrets").0.is_empty(),
        "no cluster-wide Secret access"
    );
    // The webhook only reads: besides Events, no write verb anywhere in its roles.
    for r in [cr, role] {
        for rule in r["rules"].as_array().unwrap() {
            if strs(&rule["resources"]) != set(&["events"]) {
                assert!(strs(&rule["verbs"]).is_subset(&read), "writes: {rule}");
            }
        }
    }
    assert_eq!(role["metadata"]["namespace"], "tls-steal");
    assert!(verbs(role, "", "secrets").0.is_empty(), "no Secret access");
    // The controller keeps the selfManaged certificate: the MutatingWebhookConfiguration's
    // caBundle, by name, and the certificate's Secret; and the session signing key's.
    let (mwc, named) = verbs(
        ccr,
        "admissionregistration.k8s.io",
        "mutatingwebhookconfigurations",
    );
    assert_eq!(mwc, set(&["get", "patch"]));
    assert!(
        named,
        "MWC access is limited to the webhook's configuration by name"
    );
    assert_eq!(
        named_secrets(crole),
        set(&["tls-steal-session-keys", "tls-steal-webhook-tls"])
    );
    let secret_verbs: BTreeSet<String> = crole["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| strs(&r["resources"]).contains("secrets"))
        .flat_map(|r| strs(&r["verbs"]))
        .collect();
    assert_eq!(secret_verbs, set(&["get", "update", "create"]));

    // The webhook signs nothing: no StealSession access (admission sees the request itself),
    // only the published public keys, by name.
    assert!(verbs(cr, "tls-steal.io", "stealsessions").0.is_empty());
    assert!(
        verbs(cr, "tls-steal.io", "stealsessions/status")
            .0
            .is_empty()
    );
    assert_eq!(
        verbs(role, "", "configmaps"),
        (set(&["get"]), true),
        "only the public keys ConfigMap"
    );
    // Roles to bind for developers and viewers.
    let user = find_named(&objs, "ClusterRole", "tls-steal-user");
    assert_eq!(
        verbs(user, "tls-steal.io", "stealsessions").0,
        set(&["create", "delete", "get", "list", "watch"])
    );
    assert!(verbs(user, "", "pods/portforward").0.contains("create"));
    assert!(verbs(user, "", "secrets").0.is_empty());
    let viewer = find_named(&objs, "ClusterRole", "tls-steal-viewer");
    assert_eq!(verbs(viewer, "tls-steal.io", "stealsessions").0, read);
    assert_eq!(viewer["rules"].as_array().unwrap().len(), 1);
    // Without tickets nobody keeps a signing key or reads public keys: the webhook has no Role
    // at all, the controller only the certificate's Secret.
    let disabled = render(&["sessions.authorization=disabled"]);
    assert!(
        !disabled
            .iter()
            .any(|o| o["kind"] == "Role" && o["metadata"]["name"] == "tls-steal-webhook")
    );
    let crole = find_named(&disabled, "Role", "tls-steal-controller");
    assert_eq!(named_secrets(crole), set(&["tls-steal-webhook-tls"]));
    assert!(verbs(crole, "", "configmaps").0.is_empty());
    let ccr = find_named(&disabled, "ClusterRole", "tls-steal-controller");
    assert!(verbs(ccr, "tls-steal.io", "stealsessions").0.is_empty());

    // Bindings point at the ServiceAccount.
    let sa = find(&objs, "ServiceAccount")["metadata"]["name"].clone();
    for kind in ["ClusterRoleBinding", "RoleBinding"] {
        let b = find(&objs, kind);
        assert_eq!(b["subjects"][0]["name"], sa);
        assert_eq!(b["subjects"][0]["namespace"], "tls-steal");
    }
}

#[test]
fn certificate_modes() {
    let cm = render(&["certificate.mode=certManager"]);
    assert!(cm.iter().any(|o| o["kind"] == "Certificate"));
    let mwc = find(&cm, "MutatingWebhookConfiguration");
    assert_eq!(
        mwc["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
        "tls-steal/tls-steal-webhook"
    );
    let args = strs(&find(&cm, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]);
    assert!(
        args.iter().any(|a| a.starts_with("--tls-cert-file=")),
        "{args:?}"
    );
    // cert-manager keeps the certificate: the controller neither makes a Secret for it nor
    // patches the MutatingWebhookConfiguration.
    let crole = find_named(&cm, "Role", "tls-steal-controller");
    assert_eq!(named_secrets(crole), set(&["tls-steal-session-keys"]));
    let c = &find_named(&cm, "Deployment", "tls-steal-controller")["spec"]["template"]["spec"]["containers"]
        [0];
    assert!(!strs(&c["args"]).contains("--manage-certificate=true"));
    assert!(
        verbs(
            find_named(&cm, "ClusterRole", "tls-steal-controller"),
            "admissionregistration.k8s.io",
            "mutatingwebhookconfigurations"
        )
        .0
        .is_empty()
    );
    assert!(
        verbs(
            find_named(&cm, "ClusterRole", "tls-steal-webhook"),
            "admissionregistration.k8s.io",
            "mutatingwebhookconfigurations"
        )
        .0
        .is_empty()
    );

    let supplied = render(&[
        "certificate.mode=secret",
        "certificate.secret.name=my-tls",
        "certificate.secret.caBundle=Q0E=",
    ]);
    let mwc = find(&supplied, "MutatingWebhookConfiguration");
    assert_eq!(mwc["webhooks"][0]["clientConfig"]["caBundle"], "Q0E=");
    let vols = &find(&supplied, "Deployment")["spec"]["template"]["spec"]["volumes"];
    assert!(
        vols.as_array()
            .unwrap()
            .iter()
            .any(|v| v["secret"]["secretName"] == "my-tls"),
        "{vols}"
    );

    let chart = chart();
    let (ok, text) = run_helm(&[
        "template",
        "x",
        chart.to_str().unwrap(),
        "--set",
        "certificate.mode=secret",
    ]);
    assert!(
        !ok && text.contains("certificate.secret"),
        "secret mode needs a Secret name:\n{text}"
    );
}

#[test]
fn schema_rejects_bad_values() {
    let chart = chart();
    for bad in [
        "sidecar.mode=sometimes",
        "webhook.failurePolicy=Maybe",
        "certificate.mode=vault",
        "replicaCount=0",
        "sidecar.workers=lots",
        "sidecar.workers=0",
        "sessions.authorization=maybe",
        "sessions.publicKeys=not a key",
    ] {
        let (ok, text) = run_helm(&["template", "x", chart.to_str().unwrap(), "--set", bad]);
        assert!(!ok, "{bad} was accepted");
        assert!(
            text.contains("schema") || text.contains("must be"),
            "{bad}: {text}"
        );
    }
}

#[test]
fn crds_are_shipped() {
    let chart = chart();
    let (ok, text) = run_helm(&["template", "x", chart.to_str().unwrap(), "--include-crds"]);
    assert!(ok, "{text}");
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap();
    let crds: BTreeSet<String> = docs
        .iter()
        .filter(|d| d["kind"] == "CustomResourceDefinition")
        .filter_map(|d| d["metadata"]["name"].as_str().map(String::from))
        .collect();
    assert_eq!(
        crds,
        set(&[
            "mirrordtlsstealconfigs.mirrord.metalbear.co",
            "mirrordclustertlsstealconfigs.mirrord.metalbear.co",
            "stealsessions.tls-steal.io"
        ])
    );
}

#[test]
fn grafana_dashboard_is_off_by_default_and_labelled_when_on() {
    let dashboards = |objs: &[Value]| -> Vec<Value> {
        objs.iter()
            .filter(|o| {
                o["kind"] == "ConfigMap" && o["metadata"]["labels"]["grafana_dashboard"] == "1"
            })
            .cloned()
            .collect()
    };
    assert!(
        dashboards(&render(&[])).is_empty(),
        "a dashboard ConfigMap by default"
    );
    let on = render(&[
        "dashboard.enabled=true",
        "dashboard.labels.team=ops",
        "dashboard.namespace=monitoring",
    ]);
    let cms = dashboards(&on);
    assert_eq!(cms.len(), 1, "{on:?}");
    let cm = &cms[0];
    assert_eq!(cm["metadata"]["name"], "tls-steal-dashboard");
    assert_eq!(cm["metadata"]["namespace"], "monitoring");
    assert_eq!(cm["metadata"]["labels"]["team"], "ops");
    let shipped: Value = serde_json::from_str(
        cm["data"]["tls-steal.json"]
            .as_str()
            .expect("the dashboard JSON in data"),
    )
    .expect("the ConfigMap carries valid JSON");
    let file: Value = serde_json::from_str(
        &std::fs::read_to_string(chart().join("dashboards/tls-steal.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(shipped, file);
    assert_eq!(shipped["uid"], "tls-steal");
    let (ok, text) = run_helm(&[
        "template",
        "x",
        chart().to_str().unwrap(),
        "--set",
        "dashboard.enabled=yes",
    ]);
    assert!(
        !ok,
        "the schema takes dashboard.enabled as a boolean only: {text}"
    );
}

#[test]
fn the_controller_runs_apart_under_its_own_account() {
    let objs = render(&[]);
    let d = find_named(&objs, "Deployment", "tls-steal-controller");
    assert_eq!(d["spec"]["replicas"], 2);
    let pod = &d["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "tls-steal-controller");
    let c = &pod["containers"][0];
    assert_eq!(c["args"][0], "controller");
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    let webhook_args =
        strs(&find(&objs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]);
    assert!(!webhook_args.contains("--controller"), "{webhook_args:?}");
    assert!(strs(&c["args"]).contains("--rollouts=true"));
    assert!(strs(&c["args"]).contains("--sign-sessions=true"));
    // Rollouts off: the Deployment stays for the signer, without a Lease or workload access.
    let off = render(&["controller.enabled=false"]);
    let d = find_named(&off, "Deployment", "tls-steal-controller");
    let args = strs(&d["spec"]["template"]["spec"]["containers"][0]["args"]);
    assert!(args.contains("--rollouts=false") && args.contains("--sign-sessions=true"));
    assert!(
        verbs(
            find_named(&off, "ClusterRole", "tls-steal-controller"),
            "apps",
            "deployments"
        )
        .0
        .is_empty()
    );
    assert!(
        verbs(
            find_named(&off, "Role", "tls-steal-controller"),
            "coordination.k8s.io",
            "leases"
        )
        .0
        .is_empty()
    );
    // Neither rollouts nor tickets nor a certificate to keep: no controller at all.
    let none = render(&[
        "controller.enabled=false",
        "sessions.authorization=disabled",
        "certificate.mode=certManager",
    ]);
    assert!(
        !none
            .iter()
            .any(|o| o["metadata"]["name"] == "tls-steal-controller"),
        "nothing to run renders no controller object"
    );
}
