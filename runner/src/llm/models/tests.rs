//! Resolution against temporary directories: fake model files, a fake Ollama store.

use super::*;
use serde_json::json;

const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

struct Dirs {
    _root: tempfile::TempDir,
    resolver: Resolver,
}

fn dirs() -> Dirs {
    let root = tempfile::tempdir().expect("temp dir");
    let sub = |n: &str| {
        let p = root.path().join(n);
        std::fs::create_dir_all(&p).expect("mkdir");
        p
    };
    let resolver = Resolver {
        model_dir: sub("models"),
        ollama_dir: Some(sub("ollama")),
        cwd: sub("work"),
    };
    Dirs {
        _root: root,
        resolver,
    }
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, bytes).expect("write");
}

/// A user catalogue with one 5-byte model, `tiny`.
fn tiny_catalogue(model_dir: &Path) {
    let toml = r#"
[models.tiny]
file = "tiny.gguf"
sha256 = "00"
bytes = 5
license = "MIT"
source = "pypi:tiny==1"
chat_template = "chatml"
"#;
    write(&model_dir.join("catalogue.toml"), toml.as_bytes());
}

fn ollama_manifest(store: &Path, rel: &str, layers: &serde_json::Value) -> PathBuf {
    let path = store.join("manifests").join(rel);
    write(
        &path,
        json!({ "schemaVersion": 2, "layers": layers })
            .to_string()
            .as_bytes(),
    );
    path
}

#[test]
fn the_builtin_catalogue_names_the_default_model() {
    let c = Catalogue::builtin();
    let e = &c.models[DEFAULT_MODEL];
    assert_eq!(e.file, "SmolLM2-135M-Instruct.Q4_1.gguf");
    assert_eq!(e.bytes, 98_362_432);
    assert_eq!(e.sha256.len(), 64);
}

#[test]
fn a_catalogue_name_resolves_to_the_file_in_the_model_dir() {
    let d = dirs();
    tiny_catalogue(&d.resolver.model_dir);
    let file = d.resolver.model_dir.join("tiny.gguf");
    write(&file, b"GGUF!");
    let m = d.resolver.resolve("tiny").expect("resolves");
    assert_eq!(m.path, file);
    assert_eq!(m.chat_template(), Some("chatml"));
    assert!(matches!(m.source, ModelSource::Catalogue(_)));
}

#[test]
fn a_missing_catalogue_model_says_how_to_fetch_it() {
    let d = dirs();
    let e = d.resolver.resolve(DEFAULT_MODEL).unwrap_err();
    assert!(matches!(e, ModelError::NotDownloaded { .. }));
    let msg = e.to_string();
    assert!(
        msg.starts_with("model `smollm2-135m` is not downloaded"),
        "{msg}"
    );
    assert!(
        msg.ends_with("run `scripts/fetch-model smollm2-135m`"),
        "{msg}"
    );
}

#[test]
fn a_catalogue_model_of_the_wrong_size_is_refused() {
    let d = dirs();
    tiny_catalogue(&d.resolver.model_dir);
    write(&d.resolver.model_dir.join("tiny.gguf"), b"GG");
    let msg = d.resolver.resolve("tiny").unwrap_err().to_string();
    assert!(
        msg.contains("is 2 bytes, but model `tiny` is 5 bytes"),
        "{msg}"
    );
    assert!(msg.contains("run `scripts/fetch-model tiny`"), "{msg}");
}

#[test]
fn a_gguf_path_resolves_relative_to_the_current_dir() {
    let d = dirs();
    write(&d.resolver.cwd.join("sub/x.gguf"), b"GGUF");
    let m = d.resolver.resolve("sub/x.gguf").expect("resolves");
    assert_eq!(m.path, d.resolver.cwd.join("sub/x.gguf"));
    assert_eq!(m.source, ModelSource::File);
    assert_eq!(m.chat_template(), None);

    let abs = d.resolver.cwd.join("sub/x.gguf");
    let m = d
        .resolver
        .resolve(abs.to_str().expect("utf-8"))
        .expect("resolves");
    assert_eq!(m.path, abs);
}

#[test]
fn a_missing_gguf_path_is_reported_as_a_file() {
    let d = dirs();
    let msg = d.resolver.resolve("nope.gguf").unwrap_err().to_string();
    assert!(msg.starts_with("model file `"), "{msg}");
    assert!(msg.contains("nope.gguf` does not exist"), "{msg}");
    assert!(msg.contains("`smollm2-135m`"), "{msg}");
}

#[test]
fn an_ollama_name_resolves_to_its_model_blob() {
    let d = dirs();
    let store = d.resolver.ollama_dir.clone().expect("store");
    let layers = json!([
        { "mediaType": "application/vnd.ollama.image.template", "digest": format!("sha256:{}", "f".repeat(64)) },
        { "mediaType": OLLAMA_MODEL_LAYER, "digest": format!("sha256:{HEX}"), "size": 4 },
    ]);
    let manifest = ollama_manifest(&store, "registry.ollama.ai/library/gemma3/1b", &layers);
    let blob = store.join("blobs").join(format!("sha256-{HEX}"));
    write(&blob, b"GGUF");

    let m = d.resolver.resolve("gemma3:1b").expect("resolves");
    assert_eq!(m.path, blob);
    assert_eq!(m.source, ModelSource::Ollama { manifest });

    // No tag means `latest`; a namespace replaces `library`.
    ollama_manifest(&store, "registry.ollama.ai/library/gemma3/latest", &layers);
    ollama_manifest(&store, "registry.ollama.ai/me/mine/latest", &layers);
    assert_eq!(d.resolver.resolve("gemma3").expect("latest").path, blob);
    assert_eq!(
        d.resolver.resolve("me/mine").expect("namespaced").path,
        blob
    );
}

#[test]
fn an_unknown_name_lists_the_catalogue_and_the_ollama_manifest_looked_for() {
    let d = dirs();
    let msg = d.resolver.resolve("gemma9").unwrap_err().to_string();
    assert!(
        msg.starts_with("model `gemma9` is not in Chimera's catalogue (`smollm2-135m`)"),
        "{msg}"
    );
    assert!(
        msg.contains("registry.ollama.ai/library/gemma9/latest"),
        "{msg}"
    );
    assert!(msg.contains("`ollama pull gemma9`"), "{msg}");
    let msg = d.resolver.resolve("../../etc:x").unwrap_err().to_string();
    assert!(msg.starts_with("model `../../etc:x` is not in"), "{msg}");
}

#[test]
fn a_broken_ollama_manifest_says_what_is_wrong() {
    let d = dirs();
    let store = d.resolver.ollama_dir.clone().expect("store");
    let layers = json!([{ "mediaType": OLLAMA_MODEL_LAYER, "digest": format!("sha256:{HEX}") }]);
    ollama_manifest(&store, "registry.ollama.ai/library/a/latest", &layers);
    let msg = d.resolver.resolve("a").unwrap_err().to_string();
    assert!(
        msg.contains(&format!(
            "its model layer `{}` is missing",
            store.join("blobs").join(format!("sha256-{HEX}")).display()
        )),
        "{msg}"
    );
    assert!(
        msg.ends_with("pull the model again with `ollama pull a`"),
        "{msg}"
    );

    ollama_manifest(&store, "registry.ollama.ai/library/b/latest", &json!([]));
    let msg = d.resolver.resolve("b").unwrap_err().to_string();
    assert!(
        msg.contains("it has no `application/vnd.ollama.image.model` layer"),
        "{msg}"
    );

    let bad = json!([{ "mediaType": OLLAMA_MODEL_LAYER, "digest": "sha256:../../x" }]);
    ollama_manifest(&store, "registry.ollama.ai/library/c/latest", &bad);
    let msg = d.resolver.resolve("c").unwrap_err().to_string();
    assert!(msg.contains("not `sha256:<hex>`"), "{msg}");
}

#[test]
fn the_model_dir_catalogue_extends_the_builtin_one_and_list_shows_presence() {
    let d = dirs();
    tiny_catalogue(&d.resolver.model_dir);
    write(&d.resolver.model_dir.join("tiny.gguf"), b"GGUF!");
    let listed = d.resolver.list().expect("lists");
    let names: Vec<(&str, bool)> = listed
        .iter()
        .map(|m| (m.name.as_str(), m.present))
        .collect();
    assert_eq!(names, [(DEFAULT_MODEL, false), ("tiny", true)]);
    assert_eq!(listed[1].path, d.resolver.model_dir.join("tiny.gguf"));
}

#[test]
fn a_broken_model_dir_catalogue_names_the_file() {
    let d = dirs();
    write(
        &d.resolver.model_dir.join("catalogue.toml"),
        b"[models.x]\nfile = 3\n",
    );
    let msg = d.resolver.resolve("x").unwrap_err().to_string();
    assert!(
        msg.starts_with("cannot read the model catalogue `"),
        "{msg}"
    );
    assert!(msg.contains("catalogue.toml`: "), "{msg}");
}

#[test]
fn ollama_names_split_into_host_namespace_model_and_tag() {
    let p = |n: &str| ollama_manifest_parts(n).map(|a| a.join("/"));
    assert_eq!(
        p("gemma3").as_deref(),
        Some("registry.ollama.ai/library/gemma3/latest")
    );
    assert_eq!(p("hf.co/u/m:Q4_K_M").as_deref(), Some("hf.co/u/m/Q4_K_M"));
    assert_eq!(p("a/b/c/d"), None);
    assert_eq!(p("../x"), None);
    assert_eq!(p("x:"), None);
    assert_eq!(p(""), None);
}
