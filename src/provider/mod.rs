//! The per-customer provider folders: `mappers/<provider-id>/`, loaded and checked as a whole.
//!
//! A folder is named after the Kratos OIDC provider id it serves and holds:
//!
//! - `mapper.jsonnet`: the claims mapper, compiled here once so syntax errors surface at load;
//! - `scim.jsonnet` (optional; required when `[scim] enabled = true`): the SCIM mapper
//!   ([`crate::mapper::MapperKind::Scim`]), compiled the same way;
//! - `provider.toml`: the settings ([`ProviderSettings`]), every key typed and checked;
//! - `README.md` (optional), for people;
//! - `tests/`: golden fixtures ([`Fixture`]), paired and parsed.
//!
//! [`Providers::load`] promises that a tree it accepts is usable as is, and that a tree it refuses
//! is refused with *every* problem it found, across all providers, each with its file and, inside a
//! file, line and column ([`LoadError`]). Across providers it also checks that no two folders
//! name the same provider id (compared case-insensitively, because folder names on macOS and
//! Windows are) and that every provider bound to a tenant lists the same verified domains for it.
//! Stray files are [`LoadWarning`]s; names starting with `.` are ignored.

mod diagnostic;
pub(crate) use diagnostic::{LineIndex, did_you_mean};
mod fixtures;
mod report;
mod settings;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use diagnostic::{LoadError, LoadWarning};
pub use fixtures::{Expectation, Fixture};
pub use report::load_reporting;
pub use settings::{ClientAuth, HopSettings, SecretSource, UpstreamSettings};
pub use settings::{JitSettings, ProviderSettings, ScimSettings, TenantBinding};

use crate::mapper::{self, MapperError, MapperKind, MapperSource};
use diagnostic::closest;

const MAPPER_FILE: &str = "mapper.jsonnet";
const SCIM_MAPPER_FILE: &str = "scim.jsonnet";
const SETTINGS_FILE: &str = "provider.toml";
const README_FILE: &str = "README.md";
const TESTS_DIR: &str = "tests";
const FOLDER_ENTRIES: &[&str] = &[
    MAPPER_FILE,
    SCIM_MAPPER_FILE,
    SETTINGS_FILE,
    README_FILE,
    TESTS_DIR,
];
const LOADER_STACK_BYTES: usize = 8 << 20;

pub use crate::domain::ids::{InvalidProviderId, ProviderId};

impl Provider {
    /// What the policy and the decision need of this provider.
    pub fn rules(&self) -> crate::domain::Rules<'_> {
        crate::domain::Rules {
            provider: &self.id,
            schema_id: &self.settings.schema_id,
            jit: self.settings.jit,
            tenants: &self.settings.tenants,
        }
    }
}

/// One provider folder, loaded and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Provider {
    pub id: ProviderId,
    pub dir: PathBuf,
    pub settings: ProviderSettings,
    pub mapper: MapperSource,
    /// The SCIM mapper (`scim.jsonnet`), when the folder has one.
    pub scim_mapper: Option<MapperSource>,
    /// Sorted by case name.
    pub fixtures: Vec<Fixture>,
}

impl Provider {
    /// The provider's mapper of `kind`, if it has one.
    pub fn mapper_of(&self, kind: MapperKind) -> Option<&MapperSource> {
        match kind {
            MapperKind::Claims => Some(&self.mapper),
            MapperKind::Scim => self.scim_mapper.as_ref(),
        }
    }
}

/// Every provider of a `mappers/` tree, sorted by id.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Providers {
    providers: Vec<Provider>,
}

impl Providers {
    /// Loads every provider folder under `dir`, or reports every problem found in the tree.
    pub fn load(dir: &Path) -> Result<(Providers, Vec<LoadWarning>), Vec<LoadError>> {
        let mut warnings = Vec::new();
        let folders = list_folders(dir, &mut warnings)?;
        if folders.is_empty() {
            warnings.push(LoadWarning::new(dir, "holds no provider folder"));
        }
        let loaded = load_folders(&folders);

        let mut errors = Vec::new();
        check_unique_ids(&folders, &mut errors);
        check_tenants_agree(&loaded, &mut errors);
        let mut providers = Vec::with_capacity(loaded.len());
        for folder in loaded {
            errors.extend(folder.errors);
            warnings.extend(folder.warnings);
            providers.extend(folder.provider);
        }
        if !errors.is_empty() {
            // Path order groups a provider's problems; line order reads a file top-down.
            errors.sort_by(|a, b| (&a.path, a.line, a.column).cmp(&(&b.path, b.line, b.column)));
            return Err(errors);
        }
        providers.sort_by(|a, b| a.id.cmp(&b.id));
        warnings.sort_by(|a, b| a.path.cmp(&b.path));
        Ok((Providers { providers }, warnings))
    }

    pub fn get(&self, id: &str) -> Option<&Provider> {
        self.providers
            .binary_search_by(|p| p.id.as_str().cmp(id))
            .ok()
            .map(|i| &self.providers[i])
    }

    pub fn iter(&self) -> impl Iterator<Item = &Provider> {
        self.providers.iter()
    }

    pub fn len(&self) -> usize {
        self.providers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.providers.is_empty()
    }

    /// Every provider's mappers (claims and SCIM), for the mapper engine.
    pub fn mapper_sources(&self) -> Vec<MapperSource> {
        self.providers
            .iter()
            .flat_map(|p| std::iter::once(&p.mapper).chain(&p.scim_mapper))
            .cloned()
            .collect()
    }
}

impl<'a> IntoIterator for &'a Providers {
    type Item = &'a Provider;
    type IntoIter = std::slice::Iter<'a, Provider>;

    fn into_iter(self) -> Self::IntoIter {
        self.providers.iter()
    }
}

/// The provider folders under `dir` as `(folder name, path)`, sorted by name.
fn list_folders(
    dir: &Path,
    warnings: &mut Vec<LoadWarning>,
) -> Result<Vec<(String, PathBuf)>, Vec<LoadError>> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        vec![LoadError::file(
            dir,
            format!("cannot list the provider folders ({e})"),
        )]
    })?;
    let mut folders = Vec::new();
    let mut errors = Vec::new();
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                errors.push(LoadError::file(
                    dir,
                    format!("cannot list the provider folders ({e})"),
                ));
                continue;
            }
        };
        let path = entry.path();
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            errors.push(LoadError::file(
                &path,
                "the folder name is not UTF-8, so it cannot be a provider id",
            ));
            continue;
        };
        if name.starts_with('.') {
            continue;
        }
        if !is_dir(&entry) {
            warnings.push(LoadWarning::new(
                &path,
                "is not a provider folder and is ignored",
            ));
            continue;
        }
        folders.push((name.to_owned(), path));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    folders.sort();
    Ok(folders)
}

/// Loads the folders on all cores: loading is file reads and mapper compiles, both of which
/// scale with threads, and a thousand providers must load within a second at start.
fn load_folders(folders: &[(String, PathBuf)]) -> Vec<Loaded> {
    let load = |part: &[(String, PathBuf)]| -> Vec<Loaded> {
        part.iter()
            .map(|(name, path)| load_folder(name, path))
            .collect()
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if threads == 1 || folders.len() < 2 * threads {
        return load(folders);
    }
    let chunk = folders.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let workers: Vec<_> = folders
            .chunks(chunk)
            .map(|part| {
                // The Jsonnet parser recurses with the mapper's nesting: give it the main
                // thread's stack rather than a spawned thread's 2 MiB default.
                let worker = std::thread::Builder::new()
                    .name("kratos-jit-load".into())
                    .stack_size(LOADER_STACK_BYTES)
                    .spawn_scoped(scope, move || load(part));
                worker.map_err(|_| part)
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| match worker {
                Ok(worker) => worker
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                // No thread to be had: load that part here instead.
                Err(part) => load(part),
            })
            .collect()
    })
}

/// Whether a directory entry is a folder, following a symbolic link.
fn is_dir(entry: &std::fs::DirEntry) -> bool {
    match entry.file_type() {
        Ok(t) if t.is_symlink() => entry.path().is_dir(),
        Ok(t) => t.is_dir(),
        Err(_) => false,
    }
}

/// What loading one folder found; `provider` only when nothing in it is wrong.
struct Loaded {
    name: String,
    settings_path: PathBuf,
    settings: Option<settings::ParsedSettings>,
    provider: Option<Provider>,
    errors: Vec<LoadError>,
    warnings: Vec<LoadWarning>,
}

fn load_folder(name: &str, dir: &Path) -> Loaded {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let id = match name.parse::<ProviderId>() {
        Ok(id) => Some(id),
        Err(e) => {
            let message = format!("the folder name is the Kratos OIDC provider id, and {e}");
            errors.push(LoadError::file(dir, message));
            None
        }
    };
    let listing = list_folder(dir, &mut errors, &mut warnings);

    let settings_path = dir.join(SETTINGS_FILE);
    let settings = if listing.has_settings {
        read_text(&settings_path, &mut errors).and_then(|text| {
            settings::parse(&text, &settings_path, dir)
                .map_err(|problems| errors.extend(problems))
                .ok()
        })
    } else {
        let message = format!(
            "{SETTINGS_FILE} is missing: every provider folder needs its settings (schema_id, [[tenants]])"
        );
        errors.push(LoadError::file(dir, message));
        None
    };

    let mapper_path = dir.join(MAPPER_FILE);
    let mapper = if listing.has_mapper {
        read_text(&mapper_path, &mut errors).and_then(|code| {
            let source = MapperSource::new(name, &mapper_path, code);
            mapper::compile(&source)
                .map_err(|e| errors.push(mapper_error(&mapper_path, e)))
                .ok()
                .map(|()| source)
        })
    } else {
        let message =
            format!("{MAPPER_FILE} is missing: every provider folder needs its claims mapper");
        errors.push(LoadError::file(dir, message));
        None
    };

    let scim_path = dir.join(SCIM_MAPPER_FILE);
    let scim_mapper = if listing.has_scim_mapper {
        read_text(&scim_path, &mut errors).and_then(|code| {
            let source = MapperSource::scim(name, &scim_path, code);
            mapper::compile(&source)
                .map_err(|e| errors.push(mapper_error(&scim_path, e)))
                .ok()
                .map(|()| source)
        })
    } else {
        if settings.as_ref().is_some_and(|s| s.settings.scim.enabled) {
            let message = format!(
                "{SCIM_MAPPER_FILE} is missing: [scim] enabled = true in {SETTINGS_FILE} needs the SCIM mapper, which maps std.extVar('scim') to the identity"
            );
            errors.push(LoadError::file(dir, message));
        }
        None
    };

    let fixtures = match &listing.tests_dir {
        Some(tests_dir) => {
            let loaded = fixtures::load(tests_dir);
            errors.extend(loaded.errors);
            warnings.extend(loaded.warnings);
            if loaded.fixtures.is_empty() {
                let message = "holds no fixtures: the mapper is untested";
                warnings.push(LoadWarning::new(tests_dir, message));
            }
            if !listing.has_scim_mapper {
                for fixture in loaded
                    .fixtures
                    .iter()
                    .filter(|f| f.kind == MapperKind::Scim)
                {
                    let message = format!(
                        "is a SCIM fixture, but the provider has no {SCIM_MAPPER_FILE} to run it with"
                    );
                    errors.push(LoadError::file(&fixture.claims_path, message));
                }
            }
            loaded.fixtures
        }
        None => {
            if !listing.has_tests_entry {
                let message = "has no tests/ folder: the mapper is untested";
                warnings.push(LoadWarning::new(dir, message));
            }
            Vec::new()
        }
    };

    let provider = match (id, &settings, mapper) {
        (Some(id), Some(parsed), Some(mapper)) if errors.is_empty() => Some(Provider {
            id,
            dir: dir.to_owned(),
            settings: parsed.settings.clone(),
            mapper,
            scim_mapper,
            fixtures,
        }),
        _ => None,
    };
    Loaded {
        name: name.to_owned(),
        settings_path,
        settings,
        provider,
        errors,
        warnings,
    }
}

/// What a provider folder holds.
#[derive(Default)]
struct Listing {
    has_mapper: bool,
    has_scim_mapper: bool,
    has_settings: bool,
    /// A `tests` entry exists, folder or not.
    has_tests_entry: bool,
    tests_dir: Option<PathBuf>,
}

fn list_folder(
    dir: &Path,
    errors: &mut Vec<LoadError>,
    warnings: &mut Vec<LoadWarning>,
) -> Listing {
    let mut listing = Listing::default();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            errors.push(LoadError::file(
                dir,
                format!("cannot list the folder ({e})"),
            ));
            return listing;
        }
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let file_name = file_name.to_string_lossy();
        match file_name.as_ref() {
            hidden if hidden.starts_with('.') => {}
            MAPPER_FILE => listing.has_mapper = true,
            SCIM_MAPPER_FILE => listing.has_scim_mapper = true,
            SETTINGS_FILE => listing.has_settings = true,
            README_FILE => {}
            TESTS_DIR => {
                listing.has_tests_entry = true;
                if is_dir(&entry) {
                    listing.tests_dir = Some(entry.path());
                } else {
                    errors.push(LoadError::file(
                        &entry.path(),
                        "must be a folder of fixtures",
                    ));
                }
            }
            stray => {
                let hint = closest(stray, FOLDER_ENTRIES)
                    .map(|known| format!(" (did you mean {known}?)"))
                    .unwrap_or_default();
                let message = format!(
                    "is ignored{hint}; a provider folder holds {MAPPER_FILE}, {SCIM_MAPPER_FILE}, {SETTINGS_FILE}, {README_FILE} and {TESTS_DIR}/"
                );
                warnings.push(LoadWarning::new(&entry.path(), message));
            }
        }
    }
    listing
}

fn read_text(path: &Path, errors: &mut Vec<LoadError>) -> Option<String> {
    match std::fs::read(path) {
        Err(e) => {
            errors.push(LoadError::file(path, format!("cannot read it ({e})")));
            None
        }
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) => Some(text),
            Err(e) => {
                let offset = e.utf8_error().valid_up_to();
                let text = String::from_utf8_lossy(e.as_bytes());
                let position = diagnostic::LineIndex::new(&text).locate(offset);
                errors.push(LoadError::at(path, position, "the file is not UTF-8 text"));
                None
            }
        },
    }
}

fn mapper_error(path: &Path, error: MapperError) -> LoadError {
    match error {
        MapperError::Compile { location, message } => {
            LoadError::at(&location.path, (location.line, location.column), message)
        }
        other => LoadError::file(path, other.to_string()),
    }
}

/// Folder names that differ only by case name the same provider.
fn check_unique_ids(folders: &[(String, PathBuf)], errors: &mut Vec<LoadError>) {
    let mut seen: BTreeMap<String, &str> = BTreeMap::new();
    for (name, path) in folders {
        if let Some(first) = seen.insert(name.to_lowercase(), name) {
            let message = format!(
                "provider \"{name}\" is the same provider id as \"{first}\" (ids are compared regardless of case); rename or remove one of the folders"
            );
            errors.push(LoadError::file(path, message));
        }
    }
}

/// One customer may sign in through several IdPs, but their tenant has one set of verified domains.
fn check_tenants_agree(loaded: &[Loaded], errors: &mut Vec<LoadError>) {
    let mut first_binding: BTreeMap<&str, (&str, Vec<&str>)> = BTreeMap::new();
    for folder in loaded {
        let Some(parsed) = &folder.settings else {
            continue;
        };
        for (tenant, position) in parsed.settings.tenants.iter().zip(&parsed.tenant_positions) {
            let mut domains: Vec<&str> =
                tenant.verified_domains.iter().map(String::as_str).collect();
            domains.sort_unstable();
            match first_binding.get(tenant.id.as_str()) {
                None => {
                    first_binding.insert(tenant.id.as_str(), (&folder.name, domains));
                }
                Some((first, first_domains)) if *first_domains != domains => {
                    errors.push(LoadError::at(
                        &folder.settings_path,
                        *position,
                        format!(
                            "tenant \"{}\" has verified domains [{}] here but [{}] in provider \"{first}\"; every provider bound to a tenant must list the same verified domains",
                            tenant.id,
                            domains.join(", "),
                            first_domains.join(", ")
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
    }
}
