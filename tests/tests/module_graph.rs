//! Dependencies between the modules of each crate run one way: no module
//! imports from a module that (directly or through others) imports it.
//!
//! Every source file of `runtime`, `simulator`, `manifest` and `macros` is
//! parsed with syn. An edge `a -> b` is any path in module `a` that names
//! module `b`: `use` trees and every other path (`crate::x::f()`,
//! `super::T`, a child module by its bare name). Inline modules
//! (`mod m { .. }`) are modules of their own; `#[cfg(test)]` items and
//! visibilities (`pub(super)`) are ignored. A re-exported name
//! (`crate::Denied`, `super::StartError`) is followed to the module that
//! defines it: the facade neither hides a circle nor makes one.
//! `MODULE_GRAPH_DEBUG=1` prints every edge with the path that made it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use syn::visit::Visit;

/// A module path inside one crate, `""` for the root, segments joined by `::`.
type Module = String;

fn join(parent: &str, child: &str) -> Module {
    if parent.is_empty() {
        child.to_owned()
    } else {
        format!("{parent}::{child}")
    }
}

fn parent_of(module: &str) -> Module {
    module
        .rsplit_once("::")
        .map_or_else(String::new, |(parent, _)| parent.to_owned())
}

fn is_cfg_test(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("cfg")
            && a.parse_args::<syn::Meta>()
                .is_ok_and(|m| m.path().is_ident("test"))
    })
}

/// Every `.rs` file under `src` with its module path.
fn files(src: &Path) -> Vec<(Module, PathBuf)> {
    let mut out = Vec::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path
                .strip_prefix(src)
                .expect("under src")
                .with_extension("");
            let mut parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if matches!(
                parts.last().map(String::as_str),
                Some("mod" | "lib" | "main")
            ) {
                parts.pop();
            }
            out.push((parts.join("::"), path));
        }
    }
    out
}

/// The paths each module names, before resolution: `(module, segments)`.
#[derive(Default)]
struct Collector {
    stack: Vec<Module>,
    modules: BTreeSet<Module>,
    paths: Vec<(Module, Vec<String>)>,
    /// Names each module brings in with `use`: (module, name) -> path.
    uses: BTreeMap<(Module, String), Vec<String>>,
}

impl Collector {
    fn current(&self) -> Module {
        self.stack.last().cloned().unwrap_or_default()
    }

    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.use_tree(prefix, &p.tree);
                prefix.pop();
            }
            syn::UseTree::Name(n) => self.use_leaf(prefix, &n.ident.to_string(), None),
            syn::UseTree::Rename(r) => {
                self.use_leaf(prefix, &r.ident.to_string(), Some(r.rename.to_string()));
            }
            syn::UseTree::Glob(_) => self.paths.push((self.current(), prefix.clone())),
            syn::UseTree::Group(g) => {
                for tree in &g.items {
                    self.use_tree(prefix, tree);
                }
            }
        }
    }

    fn use_leaf(&mut self, prefix: &[String], name: &str, rename: Option<String>) {
        let mut path = prefix.to_vec();
        if name != "self" {
            path.push(name.to_owned());
        }
        let alias = rename.unwrap_or_else(|| path.last().cloned().unwrap_or_default());
        self.uses.insert((self.current(), alias), path.clone());
        self.paths.push((self.current(), path));
    }
}

impl<'ast> Visit<'ast> for Collector {
    fn visit_item(&mut self, item: &'ast syn::Item) {
        let attrs = match item {
            syn::Item::Mod(m) => &m.attrs,
            syn::Item::Use(u) => &u.attrs,
            syn::Item::Fn(f) => &f.attrs,
            syn::Item::Impl(i) => &i.attrs,
            syn::Item::Const(c) => &c.attrs,
            syn::Item::Static(s) => &s.attrs,
            syn::Item::Struct(s) => &s.attrs,
            syn::Item::Enum(e) => &e.attrs,
            _ => return syn::visit::visit_item(self, item),
        };
        if is_cfg_test(attrs) {
            return;
        }
        syn::visit::visit_item(self, item);
    }

    fn visit_item_mod(&mut self, item: &'ast syn::ItemMod) {
        let module = join(&self.current(), &item.ident.to_string());
        self.modules.insert(module.clone());
        if let Some((_, items)) = &item.content {
            self.stack.push(module);
            for item in items {
                self.visit_item(item);
            }
            self.stack.pop();
        }
    }

    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        self.use_tree(&mut Vec::new(), &item.tree);
    }

    // `pub(super)` / `pub(in crate::m)` widen who may use an item; they are
    // not a use of that module.
    fn visit_visibility(&mut self, _: &'ast syn::Visibility) {}

    fn visit_path(&mut self, path: &'ast syn::Path) {
        let segments = path.segments.iter().map(|s| s.ident.to_string()).collect();
        self.paths.push((self.current(), segments));
        syn::visit::visit_path(self, path);
    }
}

/// The module a path names (its longest prefix that is a module), if any.
fn resolve(c: &Collector, from: &str, path: &[String], depth: u8) -> Option<Module> {
    let (mut base, rest): (Module, &[String]) = match path.first().map(String::as_str) {
        Some("crate") => (String::new(), &path[1..]),
        Some("self") => (from.to_owned(), &path[1..]),
        Some("super") => {
            let mut base = from.to_owned();
            let mut rest = path;
            while rest.first().is_some_and(|s| s == "super") {
                base = parent_of(&base);
                rest = &rest[1..];
            }
            (base, rest)
        }
        // A bare `child::item`: a child module of `from` (a single segment is
        // a local name, not a module).
        Some(name) if path.len() > 1 && c.modules.contains(&join(from, name)) => {
            (from.to_owned(), path)
        }
        _ => return None,
    };
    let mut found = base.clone();
    for segment in rest {
        let next = join(&base, segment);
        if !c.modules.contains(&next) {
            // A name `base` re-exports (`pub use error::StartError`):
            // follow it to the module that defines it.
            if depth < 8
                && let Some(target) = c.uses.get(&(base.clone(), segment.clone()))
            {
                return resolve(c, &base, target, depth + 1).or(Some(found));
            }
            break;
        }
        base = next;
        found.clone_from(&base);
    }
    Some(found)
}

/// Each edge that lies on a circle, with the way back.
fn circles(src: &Path) -> Vec<String> {
    let mut c = Collector::default();
    let files = files(src);
    for (module, _) in &files {
        c.modules.insert(module.clone());
    }
    for (module, path) in &files {
        let text = std::fs::read_to_string(path).expect("read source");
        let file = syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        c.stack = vec![module.clone()];
        if is_cfg_test(&file.attrs) {
            continue;
        }
        for item in &file.items {
            c.visit_item(item);
        }
    }
    let mut edges: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for (from, path) in &c.paths {
        // The root declares every module (a declaration is not a use), and a
        // module's own items are not a dependency.
        if let Some(to) = resolve(&c, from, path, 0)
            && !to.is_empty()
            && to != *from
        {
            if std::env::var("MODULE_GRAPH_DEBUG").is_ok() {
                eprintln!("{from} -> {to}: {}", path.join("::"));
            }
            edges.entry(from.clone()).or_default().insert(to);
        }
    }
    let path_back = |from: &Module, to: &Module| -> Option<Vec<Module>> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![vec![from.clone()]];
        while let Some(trail) = stack.pop() {
            let last = trail.last().expect("non-empty").clone();
            if last == *to {
                return Some(trail);
            }
            if !seen.insert(last.clone()) {
                continue;
            }
            for next in edges.get(&last).into_iter().flatten() {
                let mut longer = trail.clone();
                longer.push(next.clone());
                stack.push(longer);
            }
        }
        None
    };
    let mut found = Vec::new();
    for (from, tos) in &edges {
        for to in tos {
            if let Some(back) = path_back(to, from) {
                found.push(format!("{from} -> {}", back.join(" -> ")));
            }
        }
    }
    found
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

#[test]
fn no_module_imports_from_a_module_that_imports_it() {
    let report: Vec<String> = ["runtime", "simulator", "manifest", "macros"]
        .into_iter()
        .flat_map(|krate| {
            circles(&workspace().join(krate).join("src"))
                .into_iter()
                .map(move |circle| format!("{krate}: {circle}"))
        })
        .collect();
    assert!(report.is_empty(), "import circles:\n{}", report.join("\n"));
}

/// The check itself finds a circle: two modules that name each other, and a
/// child that names the parent using it.
#[test]
fn the_check_finds_a_circle() {
    let dir = workspace().join(format!("target/tests/module_graph/{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("b")).expect("mkdir");
    let write = |name: &str, text: &str| std::fs::write(dir.join(name), text).expect("write");
    write("lib.rs", "mod a;\nmod b;\npub use a::A;\n");
    write(
        "a.rs",
        "pub struct A;\npub fn f() -> crate::b::B { todo!() }\n",
    );
    write(
        "b/mod.rs",
        "mod c;\npub struct B;\npub fn g() { c::h(); }\n",
    );
    write(
        "b/c.rs",
        "pub fn h() { let _ = crate::A; }\n#[cfg(test)]\nmod tests { use super::super::*; }\n",
    );
    let found = circles(&dir);
    // a -> b (crate::b::B), b -> b::c (c::h), b::c -> a (crate::A, re-exported by the root).
    assert!(found.iter().any(|c| c.starts_with("a -> b")), "{found:#?}");
    std::fs::write(dir.join("b/c.rs"), "pub fn h() {}\n").expect("write");
    assert_eq!(circles(&dir), Vec::<String>::new());
    let _ = std::fs::remove_dir_all(&dir);
}
