//! Which version of the `chimera:plugin` interface a component was built
//! for, read from its bytes before it is linked, so a plugin built for a
//! version this chimera does not support is refused with a message that
//! names the versions it does, instead of a linker error about a missing
//! import. The versions are the directories of `wit/`.

/// The interface versions this chimera links (the one `bindgen!` binds).
pub const SUPPORTED: &[&str] = &["0.1.0"];

/// The custom section the SDK writes the version into.
pub const SECTION: &str = "chimera:plugin-interface";

/// The package every component of the world imports interfaces from.
const PACKAGE: &str = "chimera:plugin/";

/// What a component says about the interface it targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// From the SDK's custom section, else from the versions of the
    /// `chimera:plugin/…` interfaces it imports; `None` when neither says.
    pub version: Option<String>,
    /// Where the version was read: `sdk section` or `imports`.
    pub evidence: &'static str,
}

impl Target {
    /// Whether this chimera can link the component.
    pub fn supported(&self) -> bool {
        self.version
            .as_deref()
            .is_some_and(|v| SUPPORTED.contains(&v))
    }
}

/// Reads the target version out of a component's bytes.
///
/// # Errors
/// When the bytes are not a WebAssembly binary.
pub fn target(bytes: &[u8]) -> Result<Target, String> {
    let mut section = None;
    let mut imported = None;
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        match payload.map_err(|e| format!("not a WebAssembly component: {e}"))? {
            wasmparser::Payload::CustomSection(reader) if reader.name() == SECTION => {
                section = Some(String::from_utf8_lossy(reader.data()).trim().to_owned());
            }
            wasmparser::Payload::ComponentImportSection(reader) => {
                for import in reader {
                    let import = import.map_err(|e| format!("unreadable import: {e}"))?;
                    let name = import.name.name;
                    if let Some((_, version)) = name
                        .strip_prefix(PACKAGE)
                        .and_then(|rest| rest.split_once('@'))
                    {
                        imported.get_or_insert_with(|| version.to_owned());
                    }
                }
            }
            _ => {}
        }
    }
    Ok(match (section, imported) {
        (Some(v), _) => Target {
            version: Some(v),
            evidence: "sdk section",
        },
        (None, Some(v)) => Target {
            version: Some(v),
            evidence: "imports",
        },
        (None, None) => Target {
            version: None,
            evidence: "imports",
        },
    })
}

/// Why a component cannot be linked, for people; `None` when it can.
pub fn refusal(target: &Target) -> Option<String> {
    let supported = SUPPORTED
        .iter()
        .map(|v| format!("`{v}`"))
        .collect::<Vec<_>>()
        .join(", ");
    match &target.version {
        Some(v) if SUPPORTED.contains(&v.as_str()) => None,
        Some(v) => Some(format!(
            "it was built for the plugin interface `chimera:plugin@{v}`, and this chimera supports {supported}; rebuild it against a chimera-plugin SDK for one of those, or use a chimera that supports `{v}`"
        )),
        None => Some(format!(
            "it does not target the plugin interface `chimera:plugin` (no `{SECTION}` section and no `chimera:plugin/…` imports); build it against the chimera-plugin SDK ({supported})"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_supported_versions_are_the_directories_of_wit() {
        let wit = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../wit");
        let mut dirs: Vec<String> = std::fs::read_dir(&wit)
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        dirs.sort();
        assert_eq!(dirs, SUPPORTED);
        for version in SUPPORTED {
            let text = std::fs::read_to_string(wit.join(version).join("plugin.wit")).unwrap();
            assert!(
                text.contains(&format!("package chimera:plugin@{version};")),
                "wit/{version}/plugin.wit declares another version"
            );
        }
    }

    #[test]
    fn every_built_in_declares_its_version_in_the_sdk_section_and_its_imports() {
        for builtin in crate::plugin::builtins() {
            let target = target(builtin.wasm).unwrap();
            assert_eq!(target.version.as_deref(), Some("0.1.0"), "{}", builtin.name);
            assert_eq!(target.evidence, "sdk section", "{}", builtin.name);
            assert!(refusal(&target).is_none());
        }
    }

    #[test]
    fn another_version_is_refused_naming_the_supported_ones() {
        let mine = Target {
            version: Some("9.9.9".into()),
            evidence: "sdk section",
        };
        let why = refusal(&mine).unwrap();
        assert!(
            why.contains("`chimera:plugin@9.9.9`") && why.contains("`0.1.0`"),
            "{why}"
        );
        assert!(target(b"not wasm").is_err());
    }
}
