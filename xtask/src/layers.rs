//! `cargo xtask layers`: the host library's module graph, checked.
//!
//! Every `.rs` file under `host/src` (the binary's `bin/` aside) is a
//! module; a module depends on another when its non-test code names it —
//! in a `use` or in a path anywhere in its code (`crate::…`, `super::…`,
//! `self::…`, inside macro calls too). A path through a parent's
//! re-export (`pub use self::child::Item`) is a dependency on the child
//! that defines the item, not on the parent, so re-exporting never makes a
//! cycle by itself. Three rules are checked:
//!
//! 1. no cycle between modules, parent ↔ child included;
//! 2. the layers only call down ([`LAYERS`]): a module depends on its own
//!    layer and the ones below, but for the few exceptions the design
//!    allows, each with its reason ([`ALLOWED_UPWARD`]);
//! 3. a `mod.rs` (and `lib.rs`) only declares modules and re-exports: the
//!    code lives in named files, so a child never has to reach into its
//!    parent for it.
//!
//! The check reads source only; it needs no build of the host.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use proc_macro2::{TokenStream, TokenTree};
use quote::ToTokens;
use syn::{Item, UseTree};

/// A module's path from the crate root: `["droplets", "table"]`.
type ModPath = Vec<String>;

/// One module's file and what it declares and names.
struct Module {
    file: PathBuf,
    /// Whether the file is a `mod.rs` or `lib.rs` (declarations only).
    is_root_file: bool,
    /// Items of the file other than declarations and re-exports, by kind
    /// and line (rule 2).
    code_items: Vec<String>,
    /// `pub use` re-exports: the name given here → the full path named.
    reexports: HashMap<String, ModPath>,
    /// Every path this module names, made absolute.
    named: Vec<ModPath>,
}

/// What the check found.
pub struct Report {
    /// Modules read.
    pub modules: usize,
    /// Dependencies between distinct modules.
    pub edges: usize,
    /// Dependencies on a module of a layer above, not in [`ALLOWED_UPWARD`].
    pub upward: Vec<String>,
    /// Every cycle found, as a list of modules.
    pub cycles: Vec<Vec<String>>,
    /// `mod.rs`/`lib.rs` files with code of their own.
    pub code_in_root_files: Vec<String>,
}

/// Reads the library under `src` and checks both rules.
pub fn check(src: &Path) -> Result<Report> {
    let mut modules = BTreeMap::new();
    read_dir(src, src, &mut modules)?;
    let known: BTreeSet<ModPath> = modules.keys().cloned().collect();
    let mut graph: BTreeMap<ModPath, BTreeSet<ModPath>> = BTreeMap::new();
    for (path, module) in &modules {
        let deps = graph.entry(path.clone()).or_default();
        for named in &module.named {
            let target = resolve(named, &known, &modules, 0);
            if &target != path {
                deps.insert(target);
            }
        }
    }
    let edges = graph.values().map(BTreeSet::len).sum();
    let upward = upward_dependencies(&graph);
    let cycles = find_cycles(&graph)
        .into_iter()
        .map(|cycle| cycle.iter().map(display).collect())
        .collect();
    let code_in_root_files = modules
        .values()
        .filter(|module| module.is_root_file && !module.code_items.is_empty())
        .map(|module| {
            format!(
                "{}: {}",
                module.file.display(),
                module.code_items.join(", ")
            )
        })
        .collect();
    Ok(Report {
        modules: modules.len(),
        edges,
        upward,
        cycles,
        code_in_root_files,
    })
}

fn display(path: &ModPath) -> String {
    if path.is_empty() {
        "crate".to_string()
    } else {
        format!("crate::{}", path.join("::"))
    }
}

fn read_dir(src: &Path, dir: &Path, modules: &mut BTreeMap<ModPath, Module>) -> Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .map(|entry| entry.map(|entry| entry.path()))
        .collect::<std::io::Result<_>>()?;
    entries.sort();
    for path in entries {
        let relative = path.strip_prefix(src).unwrap_or(&path);
        if relative.starts_with("bin") {
            continue;
        }
        if path.is_dir() {
            read_dir(src, &path, modules)?;
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            let module_path = module_path(relative);
            let module = read_module(&path, &module_path)?;
            modules.insert(module_path, module);
        }
    }
    Ok(())
}

/// The layers, top first: a module may depend on modules of its own layer
/// and of the layers below. Top-level modules not named here (`lib.rs`)
/// are outside the rule.
const LAYERS: &[&[&str]] = &[
    &["http", "jobs"],
    &["admin", "dispatch"],
    &["app"],
    &["droplets"],
    &["guest"],
    &["capabilities"],
    &["storage", "identity"],
    &["ops", "error", "bindings"],
];

/// The upward dependencies the design allows, each with its reason (kept
/// in CONTRIBUTING.md too).
const ALLOWED_UPWARD: &[(&str, &str, &str)] = &[
    (
        "admin",
        "http::request_body",
        "the admin API reads request bodies as dispatch does",
    ),
    (
        "dispatch",
        "http::request_body",
        "the droplet call reads its request body under the droplet's limit",
    ),
    (
        "app",
        "http::connection",
        "the composition root holds the connection limits it is given",
    ),
    (
        "app",
        "http::access_log",
        "the composition root holds the access-log choice it is given",
    ),
    (
        "app",
        "http::request_body",
        "the composition root holds the host-wide budget of request bytes it is given",
    ),
    (
        "app",
        "http::router",
        "the composition root normalizes the configured domain as routing compares hosts",
    ),
    (
        "capabilities",
        "droplets::manifest",
        "a capability checks its grant in the manifest, a leaf that depends on nothing",
    ),
    (
        "capabilities",
        "droplets::manifest_rules",
        "a refused grant is a `ManifestError` naming the field, from the manifest's leaf of rules",
    ),
    (
        "identity",
        "droplets::manifest",
        "the auth policy is the manifest's, a leaf that depends on nothing",
    ),
];

fn layer_of(path: &ModPath) -> Option<usize> {
    let top = path.first()?;
    LAYERS
        .iter()
        .position(|layer| layer.contains(&top.as_str()))
}

/// Every dependency of a module on a module of a higher layer that
/// [`ALLOWED_UPWARD`] does not allow.
fn upward_dependencies(graph: &BTreeMap<ModPath, BTreeSet<ModPath>>) -> Vec<String> {
    let mut upward = Vec::new();
    for (from, deps) in graph {
        let Some(from_layer) = layer_of(from) else {
            continue;
        };
        for to in deps {
            let Some(to_layer) = layer_of(to) else {
                continue;
            };
            let target = to.join("::");
            let allowed = ALLOWED_UPWARD.iter().any(|(source, module, _)| {
                from.first().is_some_and(|top| top == source) && target == *module
            });
            if to_layer < from_layer && !allowed {
                upward.push(format!("{} → {}", display(from), display(to)));
            }
        }
    }
    upward
}

/// `droplets/table.rs` → `["droplets", "table"]`; `droplets/mod.rs` and
/// `lib.rs` name their folder.
fn module_path(relative: &Path) -> ModPath {
    let mut parts: Vec<String> = relative
        .components()
        .map(|part| part.as_os_str().to_string_lossy().into_owned())
        .collect();
    if let Some(last) = parts.pop() {
        let stem = last.trim_end_matches(".rs");
        if stem != "mod" && stem != "lib" {
            parts.push(stem.to_string());
        }
    }
    parts
}

fn read_module(file: &Path, path: &ModPath) -> Result<Module> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let parsed =
        syn::parse_file(&text).with_context(|| format!("cannot parse {}", file.display()))?;
    let name = file
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or("");
    let mut module = Module {
        file: file.to_path_buf(),
        is_root_file: name == "mod.rs" || name == "lib.rs",
        code_items: Vec::new(),
        reexports: HashMap::new(),
        named: Vec::new(),
    };
    for item in &parsed.items {
        if is_test_only(item) {
            continue;
        }
        match item {
            Item::Use(used) => {
                let mut leaves = Vec::new();
                expand(&used.tree, Vec::new(), &mut leaves);
                let public = !matches!(used.vis, syn::Visibility::Inherited);
                for (segments, alias) in leaves {
                    let Some(absolute) = absolute(path, &segments) else {
                        continue;
                    };
                    if public && alias != "*" {
                        module.reexports.insert(alias, absolute.clone());
                    }
                    module.named.push(absolute);
                }
            }
            // A declaration names its child without depending on it.
            Item::Mod(declared) if declared.content.is_none() => {}
            other => {
                if module.is_root_file && !is_macro_export(other) {
                    module.code_items.push(describe(other));
                }
                scan(other.to_token_stream(), path, &mut module.named);
            }
        }
    }
    Ok(module)
}

/// `#[cfg(test)]` items (the tests module) are not the module's code.
fn is_test_only(item: &Item) -> bool {
    let attrs = match item {
        Item::Mod(item) => &item.attrs,
        Item::Fn(item) => &item.attrs,
        Item::Use(item) => &item.attrs,
        Item::Impl(item) => &item.attrs,
        Item::Struct(item) => &item.attrs,
        Item::Const(item) => &item.attrs,
        _ => return false,
    };
    attrs.iter().any(|attr| {
        attr.path().is_ident("cfg") && attr.to_token_stream().to_string().contains("test")
    })
}

/// `lib.rs` may hold the crate's exported macros (they must be defined at
/// the root or be reachable from it).
fn is_macro_export(item: &Item) -> bool {
    matches!(item, Item::Macro(item) if item.attrs.iter().any(|attr| attr.path().is_ident("macro_export")))
}

fn describe(item: &Item) -> String {
    match item {
        Item::Fn(item) => format!("fn {}", item.sig.ident),
        Item::Struct(item) => format!("struct {}", item.ident),
        Item::Enum(item) => format!("enum {}", item.ident),
        Item::Trait(item) => format!("trait {}", item.ident),
        Item::Const(item) => format!("const {}", item.ident),
        Item::Static(item) => format!("static {}", item.ident),
        Item::Type(item) => format!("type {}", item.ident),
        Item::Impl(item) => format!("impl {}", item.self_ty.to_token_stream()),
        Item::Mod(item) => format!("inline mod {}", item.ident),
        _ => "an item".to_string(),
    }
}

/// Every leaf of a use tree: its segments and the name it is known by.
fn expand(tree: &UseTree, prefix: Vec<String>, leaves: &mut Vec<(Vec<String>, String)>) {
    match tree {
        UseTree::Path(path) => {
            let mut prefix = prefix;
            prefix.push(path.ident.to_string());
            expand(&path.tree, prefix, leaves);
        }
        UseTree::Name(name) => {
            let name = name.ident.to_string();
            let mut segments = prefix;
            let alias = if name == "self" {
                segments.last().cloned().unwrap_or_default()
            } else {
                segments.push(name.clone());
                name
            };
            leaves.push((segments, alias));
        }
        UseTree::Rename(rename) => {
            let mut segments = prefix;
            if rename.ident != "self" {
                segments.push(rename.ident.to_string());
            }
            leaves.push((segments, rename.rename.to_string()));
        }
        UseTree::Glob(_) => leaves.push((prefix, "*".to_string())),
        UseTree::Group(group) => {
            for tree in &group.items {
                expand(tree, prefix.clone(), leaves);
            }
        }
    }
}

/// `segments` (starting `crate`, `super` or `self`) made absolute from
/// module `here`; `None` for a path into another crate.
fn absolute(here: &ModPath, segments: &[String]) -> Option<ModPath> {
    let (first, rest) = segments.split_first()?;
    let mut base = match first.as_str() {
        "crate" => Vec::new(),
        "self" => here.clone(),
        "super" => {
            let mut base = here.clone();
            base.pop()?;
            base
        }
        _ => return None,
    };
    let mut rest = rest.iter().peekable();
    while rest.peek().is_some_and(|segment| *segment == "super") {
        base.pop()?;
        rest.next();
    }
    base.extend(rest.cloned());
    Some(base)
}

/// Finds `crate :: a :: b`, `super :: …` and `self :: …` chains in code,
/// macro calls included (their tokens are scanned as they are written).
fn scan(tokens: TokenStream, here: &ModPath, named: &mut Vec<ModPath>) {
    let tokens: Vec<TokenTree> = tokens.into_iter().collect();
    let mut at = 0;
    while at < tokens.len() {
        match &tokens[at] {
            TokenTree::Group(group) => scan(group.stream(), here, named),
            TokenTree::Ident(ident)
                if matches!(ident.to_string().as_str(), "crate" | "super" | "self") =>
            {
                let mut segments = vec![ident.to_string()];
                let mut next = at + 1;
                while let (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b)), Some(seg)) =
                    (tokens.get(next), tokens.get(next + 1), tokens.get(next + 2))
                {
                    let TokenTree::Ident(seg) = seg else { break };
                    if a.as_char() != ':' || b.as_char() != ':' {
                        break;
                    }
                    segments.push(seg.to_string());
                    next += 3;
                }
                if segments.len() > 1
                    && let Some(path) = absolute(here, &segments)
                {
                    named.push(path);
                }
                at = next.max(at + 1);
                continue;
            }
            _ => {}
        }
        at += 1;
    }
}

/// The module a path depends on: the deepest known module on it, followed
/// through re-exports to the module that defines the item.
fn resolve(
    path: &ModPath,
    known: &BTreeSet<ModPath>,
    modules: &BTreeMap<ModPath, Module>,
    hops: usize,
) -> ModPath {
    let mut current: ModPath = Vec::new();
    let mut rest = path.iter();
    while let Some(segment) = rest.next() {
        let mut deeper = current.clone();
        deeper.push(segment.clone());
        if known.contains(&deeper) {
            current = deeper;
            continue;
        }
        // An item of `current`: re-exported from elsewhere?
        let reexport = modules
            .get(&current)
            .and_then(|module| module.reexports.get(segment));
        match reexport {
            // A chain of re-exports is short; a loop of them is not ours
            // to follow (rustc refuses it).
            Some(target) if hops < 16 && target != path => {
                let mut followed = target.clone();
                followed.extend(rest.cloned());
                return resolve(&followed, known, modules, hops + 1);
            }
            _ => break,
        }
    }
    current
}

/// Every elementary cycle's representative: Tarjan's strongly connected
/// components of more than one module (or a module naming itself, which
/// `check` never records).
fn find_cycles(graph: &BTreeMap<ModPath, BTreeSet<ModPath>>) -> Vec<Vec<ModPath>> {
    struct Tarjan<'a> {
        graph: &'a BTreeMap<ModPath, BTreeSet<ModPath>>,
        index: HashMap<&'a ModPath, usize>,
        low: HashMap<&'a ModPath, usize>,
        stack: Vec<&'a ModPath>,
        on_stack: BTreeSet<&'a ModPath>,
        next: usize,
        found: Vec<Vec<ModPath>>,
    }
    impl<'a> Tarjan<'a> {
        fn visit(&mut self, node: &'a ModPath) {
            self.index.insert(node, self.next);
            self.low.insert(node, self.next);
            self.next += 1;
            self.stack.push(node);
            self.on_stack.insert(node);
            for dep in self.graph.get(node).into_iter().flatten() {
                if !self.graph.contains_key(dep) {
                    continue;
                }
                if !self.index.contains_key(dep) {
                    self.visit(dep);
                    let low = self.low[node].min(self.low[dep]);
                    self.low.insert(node, low);
                } else if self.on_stack.contains(dep) {
                    let low = self.low[node].min(self.index[dep]);
                    self.low.insert(node, low);
                }
            }
            if self.low[node] == self.index[node] {
                let mut component = Vec::new();
                while let Some(top) = self.stack.pop() {
                    self.on_stack.remove(top);
                    component.push(top.clone());
                    if top == node {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.reverse();
                    self.found.push(component);
                }
            }
        }
    }
    let mut tarjan = Tarjan {
        graph,
        index: HashMap::new(),
        low: HashMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        found: Vec::new(),
    };
    for node in graph.keys() {
        if !tarjan.index.contains_key(node) {
            tarjan.visit(node);
        }
    }
    tarjan.found
}

/// Runs the check and prints its verdict; an error when a rule is broken.
pub fn run(root: &Path) -> Result<()> {
    let report = check(&root.join("host").join("src"))?;
    println!(
        "xtask layers: {} modules, {} dependencies between them, {} cycles, {} upward, {} mod.rs with code",
        report.modules,
        report.edges,
        report.cycles.len(),
        report.upward.len(),
        report.code_in_root_files.len()
    );
    for upward in &report.upward {
        println!("  upward: {upward}");
    }
    for cycle in &report.cycles {
        println!("  cycle: {}", cycle.join(" ↔ "));
    }
    for file in &report.code_in_root_files {
        println!("  code in a declarations-only file: {file}");
    }
    if !report.cycles.is_empty()
        || !report.upward.is_empty()
        || !report.code_in_root_files.is_empty()
    {
        bail!("the host's modules break the layering rules (see above and CONTRIBUTING.md)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, file: &str, text: &str) {
        let path = dir.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("xtask-layers-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_cycle_through_a_grouped_use_and_a_macro_is_found() {
        let dir = temp_dir("cycle");
        write(&dir, "lib.rs", "pub mod a;\npub mod b;\npub mod c;\n");
        write(&dir, "a.rs", "use crate::{b::{Thing}};\n");
        write(
            &dir,
            "b.rs",
            "pub struct Thing;\nfn f() { tracing::info!(x = crate::c::X); }\n",
        );
        write(
            &dir,
            "c.rs",
            "pub const X: u8 = 1;\nfn g() { let _ = super::a::h; }\n",
        );
        let report = check(&dir).unwrap();
        assert_eq!(report.cycles.len(), 1, "{:?}", report.cycles);
        assert_eq!(report.cycles[0].len(), 3);
    }

    #[test]
    fn a_reexport_is_followed_to_the_module_that_defines_the_item() {
        let dir = temp_dir("reexport");
        write(&dir, "lib.rs", "pub mod p;\n");
        write(
            &dir,
            "p/mod.rs",
            "pub mod one;\npub mod two;\npub use self::one::One;\n",
        );
        write(&dir, "p/one.rs", "pub struct One;\n");
        write(&dir, "p/two.rs", "use crate::p::One;\nuse super::one;\n");
        let report = check(&dir).unwrap();
        assert!(report.cycles.is_empty(), "{:?}", report.cycles);
        assert!(report.code_in_root_files.is_empty());
    }

    #[test]
    fn a_child_using_its_parents_own_item_is_a_cycle_and_code_in_mod_rs_is_named() {
        let dir = temp_dir("parent");
        write(&dir, "lib.rs", "pub mod p;\n");
        write(
            &dir,
            "p/mod.rs",
            "pub mod one;\npub use self::one::One;\npub struct Shared;\n",
        );
        write(&dir, "p/one.rs", "pub struct One(super::Shared);\n");
        let report = check(&dir).unwrap();
        assert_eq!(report.cycles.len(), 1, "{:?}", report.cycles);
        assert_eq!(report.code_in_root_files.len(), 1);
        assert!(report.code_in_root_files[0].contains("struct Shared"));
    }

    #[test]
    fn a_lower_layer_naming_a_higher_one_is_reported() {
        let dir = temp_dir("upward");
        write(&dir, "lib.rs", "pub mod guest;\npub mod http;\n");
        write(&dir, "http.rs", "pub fn serve() { crate::guest::run(); }\n");
        write(
            &dir,
            "guest.rs",
            "pub fn run() {}\nfn back() { crate::http::serve(); }\n",
        );
        let report = check(&dir).unwrap();
        assert_eq!(report.upward, ["crate::guest → crate::http"]);
    }

    #[test]
    fn test_modules_do_not_count() {
        let dir = temp_dir("tests");
        write(&dir, "lib.rs", "pub mod a;\npub mod b;\n");
        write(&dir, "a.rs", "use crate::b::B;\n");
        write(
            &dir,
            "b.rs",
            "pub struct B;\n#[cfg(test)]\nmod tests { use crate::a; }\n",
        );
        let report = check(&dir).unwrap();
        assert!(report.cycles.is_empty(), "{:?}", report.cycles);
    }
}
