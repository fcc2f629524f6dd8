//! The committed CRD YAML (crds/ and chart/crds/) is what `crdgen` generates.

use tls_steal_crds::crdgen;

#[test]
fn committed_crds_match_the_generator() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for (file, yaml) in crdgen::files() {
        for dir in ["crds", "chart/crds"] {
            let path = root.join(dir).join(file);
            let committed = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                committed == yaml,
                "{} is out of date: run `cargo run -p tls-steal-crds --bin crdgen -- --write`",
                path.display()
            );
        }
    }
}

#[test]
fn schema_is_structural_and_bounds_the_port() {
    let all = crdgen::render();
    let docs: Vec<serde_json::Value> = all
        .split("---\n")
        .map(|d| serde_saphyr::from_str(d).unwrap())
        .collect();
    assert_eq!(docs.len(), 3);
    for doc in &docs[..2] {
        let version = &doc["spec"]["versions"][0];
        assert_eq!(version["name"], "v1alpha");
        assert!(
            version["subresources"]["status"].is_object(),
            "status subresource"
        );
        let port = &version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["ports"]
            ["items"];
        assert_eq!(port["properties"]["port"]["maximum"], 65535.0);
        assert_eq!(port["properties"]["port"]["minimum"], 1.0);
        let required: Vec<_> = port["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(required, ["agentAsClient", "agentAsServer", "port"]);
        assert!(
            !all.contains("anyOf") && !all.contains("allOf"),
            "structural schemas have no anyOf/allOf"
        );
    }
    assert_eq!(docs[0]["spec"]["scope"], "Namespaced");
    assert_eq!(docs[1]["spec"]["scope"], "Cluster");

    // StealSession: namespaced, its own group and version, a status the controller writes.
    let s = &docs[2];
    assert_eq!(s["spec"]["group"], "tls-steal.io");
    assert_eq!(s["spec"]["scope"], "Namespaced");
    let version = &s["spec"]["versions"][0];
    assert_eq!(version["name"], "v1alpha1");
    assert!(version["subresources"]["status"].is_object());
    let spec = &version["schema"]["openAPIV3Schema"]["properties"]["spec"];
    assert_eq!(spec["properties"]["ports"]["items"]["maximum"], 65535.0);
    assert_eq!(
        spec["properties"]["filter"]["x-kubernetes-preserve-unknown-fields"],
        true
    );
    let required: Vec<_> = spec["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(required, ["target"]);
}
