#![forbid(unsafe_code)]
//! Writes the CRD YAML of every kind. `crdgen` prints it; `crdgen --write` refreshes the committed
//! copies in `crds/` and `chart/crds/` (a test fails when they drift).

fn main() {
    let write = std::env::args().any(|a| a == "--write");
    if !write {
        print!("{}", tls_steal_crds::crdgen::render());
        return;
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for (file, yaml) in tls_steal_crds::crdgen::files() {
        for dir in ["crds", "chart/crds"] {
            let path = root.join(dir).join(file);
            if let Err(e) = std::fs::write(&path, &yaml) {
                eprintln!("crdgen: cannot write {}: {e}", path.display());
                std::process::exit(1);
            }
            eprintln!("crdgen: wrote {}", path.display());
        }
    }
}
