//! `chimera schema` prints a JSON Schema of workflow files generated from
//! the loader's own types: every shipped workflow fits it, and the mistakes
//! the loader refuses by shape (unknown keys and options, wrong types, an
//! unknown backend) do not.

mod common;

use common::{chimera, root, run};
use serde_json::Value;

fn schema() -> jsonschema::Validator {
    let tmp = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = run(chimera(tmp.path()).arg("schema"));
    assert_eq!(code, 0, "{stderr}");
    let schema: Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    jsonschema::validator_for(&schema).expect("a valid JSON Schema")
}

fn yaml(text: &str) -> Value {
    serde_saphyr::from_str(text).expect("YAML")
}

#[test]
fn every_shipped_workflow_fits_the_schema() {
    let validator = schema();
    let mut checked = 0;
    for entry in std::fs::read_dir(root().join("workflows")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let doc = yaml(&std::fs::read_to_string(&path).unwrap());
            let errors: Vec<String> = validator.iter_errors(&doc).map(|e| e.to_string()).collect();
            assert!(errors.is_empty(), "{}: {errors:?}", path.display());
            checked += 1;
        }
    }
    assert!(checked >= 2, "the shipped workflows were found");
}

#[test]
fn what_the_loader_refuses_by_shape_the_schema_refuses_too() {
    let validator = schema();
    let good = std::fs::read_to_string(root().join("workflows/chimera-agent-a.yaml")).unwrap();
    assert!(validator.is_valid(&yaml(&good)));
    for (from, to) in [
        ("description:", "descripton:"),
        ("temperature: 0.8", "temprature: 0.8"),
        ("num_ctx: 512", "num_ctx: big"),
        ("backend: ollama", "backend: olama"),
        ("timeout: 600s", "timeout: [600]"),
        ("version: 1", "version: 2"),
        ("        plugin: report\n", "        plugn: report\n"),
    ] {
        assert!(good.contains(from), "{from}");
        let bad = yaml(&good.replacen(from, to, 1));
        assert!(
            !validator.is_valid(&bad),
            "`{to}` should not fit the schema"
        );
    }
}
