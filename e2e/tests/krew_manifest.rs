//! `plugins/steal.yaml` is a krew plugin manifest krew would accept: the fields and rules of
//! krew's own validation (`pkg/index/validation`: apiVersion, kind, a safe name equal to the
//! file's, a short description, a `v`-prefixed semantic version, and per platform a URI, a
//! lowercase hex sha256, `bin`, file operations and an `os`/`arch` selector), plus what ties it
//! to this repository: the version is the workspace's and the files are those
//! `scripts/plugin-archive.sh` puts in the archive.

use serde_json::Value;

fn root() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/..").to_owned()
}

fn manifest() -> Value {
    let text = std::fs::read_to_string(format!("{}/plugins/steal.yaml", root())).unwrap();
    serde_saphyr::from_str(&text).expect("valid YAML")
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{pointer} missing or not a string"))
}

#[test]
fn krew_would_accept_the_manifest() {
    let m = manifest();
    assert_eq!(
        str_at(&m, "/apiVersion"),
        "krew.googlecontainertools.github.com/v1alpha2"
    );
    assert_eq!(str_at(&m, "/kind"), "Plugin");
    let name = str_at(&m, "/metadata/name");
    assert_eq!(name, "steal", "the name must equal the file name");
    assert!(
        name.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    );
    assert!(!str_at(&m, "/spec/shortDescription").is_empty());
    let version = str_at(&m, "/spec/version");
    let semver = version.strip_prefix('v').expect("krew wants a leading v");
    let parts: Vec<&str> = semver
        .split(['-', '+'])
        .next()
        .unwrap()
        .split('.')
        .collect();
    assert_eq!(parts.len(), 3, "{version}");
    assert!(
        parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
    );
    let platforms = m
        .pointer("/spec/platforms")
        .and_then(Value::as_array)
        .expect("platforms");
    assert!(!platforms.is_empty());
    for p in platforms {
        let uri = str_at(p, "/uri");
        assert!(
            uri.starts_with("https://") && uri.ends_with(".tar.gz"),
            "{uri}"
        );
        assert!(uri.contains(version), "{uri} names another version");
        let sha = str_at(p, "/sha256");
        assert!(
            sha.len() == 64 && sha.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')),
            "{sha}"
        );
        assert_eq!(str_at(p, "/bin"), "kubectl-steal");
        let files = p
            .pointer("/files")
            .and_then(Value::as_array)
            .expect("files");
        let from: Vec<&str> = files.iter().map(|f| str_at(f, "/from")).collect();
        assert_eq!(from, ["kubectl-steal", "README.md"]);
        assert!(files.iter().all(|f| !str_at(f, "/to").is_empty()));
        let labels = p
            .pointer("/selector/matchLabels")
            .and_then(Value::as_object)
            .expect("a selector with matchLabels");
        assert!(!labels.is_empty());
        assert!(
            labels.keys().all(|k| k == "os" || k == "arch"),
            "{labels:?}"
        );
    }
}

#[test]
fn the_manifest_version_is_the_workspace_version() {
    let cargo = std::fs::read_to_string(format!("{}/Cargo.toml", root())).unwrap();
    let version = cargo
        .lines()
        .find_map(|l| l.strip_prefix("version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .expect("workspace version");
    assert_eq!(str_at(&manifest(), "/spec/version"), format!("v{version}"));
    let script = std::fs::read_to_string(format!("{}/scripts/plugin-archive.sh", root())).unwrap();
    assert!(
        script.contains("kubectl-steal README.md"),
        "the archive holds the files the manifest names"
    );
}
