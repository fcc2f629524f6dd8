//! The README's example config ("Using it in a cluster", step 3) is the one the e2e suite runs
//! (`fixtures/demo-config.yaml.in`), up to names: if either changes, this fails.

use serde_json::Value;

fn parse(yaml: &str) -> Value {
    serde_saphyr::from_str(yaml).expect("valid YAML")
}

#[test]
fn readme_example_is_the_e2e_config() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let section = readme
        .split("## Using it in a cluster")
        .nth(1)
        .expect("README has a 'Using it in a cluster' section");
    let block = section
        .split("```yaml\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a yaml block in that section");
    // The block is indented as part of a list item.
    let indent = block
        .lines()
        .find(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .unwrap_or(0);
    let example: String = block
        .lines()
        .map(|l| l.get(indent..).unwrap_or("").to_owned() + "\n")
        .collect();
    let example = example
        .replace("checkout", "__NAME__")
        .replace("shop", "__NAMESPACE__");
    let fixture =
        std::fs::read_to_string(format!("{root}/e2e/fixtures/demo-config.yaml.in")).unwrap();
    assert_eq!(parse(&example), parse(&fixture));
}
