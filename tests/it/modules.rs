//! The crate's modules have no cycles: within any folder, no file or subfolder imports
//! one that imports it back, directly or around a loop. rustc allows cycles, so this test
//! keeps the direction ARCHITECTURE.md draws (record ← source ← ingest → store ← rules /
//! alerts / evidence; in http, app → router → api, ui → state → access).
//!
//! Each file under `src/` is a module (`x/mod.rs` is `x`). Its imports are the paths it
//! names through `crate::`, `super::`, `self::` or a child module it declares, in `use`
//! items, code and macro arguments alike, resolved to the longest module prefix that is a
//! file. An import between two modules is one between the two siblings that hold them
//! (`a::b::c` → `a::d` is `a::b` → `a::d`); the cycles are among siblings. A folder's
//! `mod.rs` and its own files may name each other: it is the folder's contract. Code
//! under `#[cfg(test)]` is left out: a module's tests may use anything.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use syn::visit::Visit;

type Module = Vec<String>;

/// Every `.rs` file of `src/` (but the binary's `main.rs`) by module path.
fn crate_files(src: &Path) -> BTreeMap<Module, String> {
    let mut files = BTreeMap::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") || path == src.join("main.rs") {
                continue;
            }
            let relative = path.strip_prefix(src).unwrap().with_extension("");
            let mut module: Module = relative.iter().map(|p| p.to_string_lossy().into_owned()).collect();
            if module.last().is_some_and(|m| m == "mod" || m == "lib") {
                module.pop();
            }
            files.insert(module, std::fs::read_to_string(&path).unwrap());
        }
    }
    files
}

fn is_test_only(attrs: &[syn::Attribute]) -> bool {
    attrs
        .iter()
        .any(|a| a.path().is_ident("cfg") && a.parse_args::<syn::Meta>().is_ok_and(|m| m.path().is_ident("test")))
}

/// Every path a file names, as its segments, and the child modules it declares.
#[derive(Default)]
struct Names {
    paths: Vec<Vec<String>>,
    children: BTreeSet<String>,
}

impl Names {
    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.use_tree(prefix, &p.tree);
                prefix.pop();
            }
            syn::UseTree::Name(n) => self.paths.push([prefix.clone(), vec![n.ident.to_string()]].concat()),
            syn::UseTree::Rename(r) => self.paths.push([prefix.clone(), vec![r.ident.to_string()]].concat()),
            syn::UseTree::Glob(_) => self.paths.push(prefix.clone()),
            syn::UseTree::Group(g) => g.items.iter().for_each(|t| self.use_tree(prefix, t)),
        }
    }

    /// Paths inside macro arguments (`routes!(a::b)`, `format!("{}", crate::x::Y)`), which
    /// syn leaves as tokens: runs of `ident (:: ident)*`.
    fn tokens(&mut self, tokens: proc_macro2::TokenStream) {
        let mut run: Vec<String> = Vec::new();
        let mut colons = 0;
        for token in tokens {
            match token {
                proc_macro2::TokenTree::Ident(ident) if run.is_empty() || colons == 2 => {
                    run.push(ident.to_string());
                    colons = 0;
                }
                proc_macro2::TokenTree::Punct(p) if p.as_char() == ':' && !run.is_empty() && colons < 2 => colons += 1,
                other => {
                    self.paths.push(std::mem::take(&mut run));
                    colons = 0;
                    match other {
                        proc_macro2::TokenTree::Group(group) => self.tokens(group.stream()),
                        proc_macro2::TokenTree::Ident(ident) => run.push(ident.to_string()),
                        _ => {}
                    }
                }
            }
        }
        self.paths.push(run);
    }
}

impl<'ast> Visit<'ast> for Names {
    fn visit_item(&mut self, item: &'ast syn::Item) {
        let attrs = match item {
            syn::Item::Mod(m) => &m.attrs,
            syn::Item::Fn(f) => &f.attrs,
            syn::Item::Impl(i) => &i.attrs,
            syn::Item::Use(u) => &u.attrs,
            syn::Item::Const(c) => &c.attrs,
            syn::Item::Static(s) => &s.attrs,
            syn::Item::Struct(s) => &s.attrs,
            syn::Item::Enum(e) => &e.attrs,
            syn::Item::Trait(t) => &t.attrs,
            syn::Item::Macro(m) => &m.attrs,
            _ => return syn::visit::visit_item(self, item),
        };
        if is_test_only(attrs) {
            return;
        }
        if let syn::Item::Mod(m) = item
            && m.content.is_none()
        {
            self.children.insert(m.ident.to_string());
        }
        syn::visit::visit_item(self, item);
    }

    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        self.use_tree(&mut Vec::new(), &item.tree);
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        self.paths.push(path.segments.iter().map(|s| s.ident.to_string()).collect());
        syn::visit::visit_path(self, path);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        self.tokens(mac.tokens.clone());
        syn::visit::visit_macro(self, mac);
    }
}

/// The files each file imports, by module path.
fn module_graph(files: &BTreeMap<Module, String>) -> BTreeMap<Module, BTreeSet<Module>> {
    let mut graph = BTreeMap::new();
    for (module, text) in files {
        let file = syn::parse_file(text).unwrap_or_else(|e| panic!("src/{}: {e}", module.join("/")));
        let mut names = Names::default();
        names.visit_file(&file);
        let mut edges = BTreeSet::new();
        for path in &names.paths {
            let Some(first) = path.first() else { continue };
            let (mut base, rest) = match first.as_str() {
                "crate" => (Vec::new(), &path[1..]),
                "self" => (module.clone(), &path[1..]),
                "super" => (module[..module.len().saturating_sub(1)].to_vec(), &path[1..]),
                child if names.children.contains(child) => (module.clone(), &path[..]),
                _ => continue,
            };
            let mut rest = rest;
            while rest.first().is_some_and(|s| s == "super") {
                base.pop();
                rest = &rest[1..];
            }
            let full = [base, rest.to_vec()].concat();
            let target = (0..=full.len()).rev().map(|n| full[..n].to_vec()).find(|m| files.contains_key(m));
            if let Some(target) = target
                && &target != module
            {
                edges.insert(target);
            }
        }
        graph.insert(module.clone(), edges);
    }
    graph
}

/// The imports between siblings: each import lifted to the two children of the folder
/// that holds both ends; a module's imports of its own folders (or theirs of it) drop out.
fn sibling_graph(graph: &BTreeMap<Module, BTreeSet<Module>>) -> BTreeMap<Module, BTreeSet<Module>> {
    let mut siblings: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for (from, targets) in graph {
        for to in targets {
            let common = from.iter().zip(to).take_while(|(a, b)| a == b).count();
            if common == from.len() || common == to.len() {
                continue;
            }
            siblings.entry(from[..=common].to_vec()).or_default().insert(to[..=common].to_vec());
        }
    }
    siblings
}

/// The strongly connected components with more than one file (Tarjan).
fn cycles(graph: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<Vec<Module>> {
    struct Walk<'g> {
        graph: &'g BTreeMap<Module, BTreeSet<Module>>,
        index: BTreeMap<&'g Module, usize>,
        low: BTreeMap<&'g Module, usize>,
        stack: Vec<&'g Module>,
        found: Vec<Vec<Module>>,
    }
    impl<'g> Walk<'g> {
        fn visit(&mut self, v: &'g Module) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            for w in self.graph.get(v).into_iter().flatten() {
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let low = self.low[v].min(self.low[w]);
                    self.low.insert(v, low);
                } else if self.stack.contains(&w) {
                    let low = self.low[v].min(self.index[w]);
                    self.low.insert(v, low);
                }
            }
            if self.low[v] == self.index[v] {
                let at = self.stack.iter().position(|m| *m == v).unwrap();
                let component: Vec<Module> = self.stack.drain(at..).cloned().collect();
                if component.len() > 1 {
                    self.found.push(component);
                }
            }
        }
    }
    let mut walk = Walk { graph, index: BTreeMap::new(), low: BTreeMap::new(), stack: Vec::new(), found: Vec::new() };
    for module in graph.keys() {
        if !walk.index.contains_key(module) {
            walk.visit(module);
        }
    }
    walk.found
}

fn describe(graph: &BTreeMap<Module, BTreeSet<Module>>, cycle: &[Module]) -> String {
    let name = |m: &Module| m.join("::");
    let mut lines = Vec::new();
    for from in cycle {
        for to in graph.get(from).into_iter().flatten() {
            if cycle.contains(to) {
                lines.push(format!("  {} imports {}", name(from), name(to)));
            }
        }
    }
    lines.join("\n")
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let files = crate_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    assert!(files.len() > 50, "the crate's files were not found: {:?}", files.keys());
    let graph = sibling_graph(&module_graph(&files));
    let found = cycles(&graph);
    let report: Vec<String> = found.iter().map(|c| describe(&graph, c)).collect();
    assert!(found.is_empty(), "module cycles:\n{}", report.join("\n\n"));
}

#[test]
fn the_check_finds_cycles_through_use_code_macros_and_parents() {
    let module = |path: &str| -> Module { path.split("::").filter(|s| !s.is_empty()).map(String::from).collect() };
    let files = |sources: &[(&str, &str)]| -> BTreeMap<Module, String> {
        sources.iter().map(|(m, s)| (module(m), s.to_string())).collect()
    };
    let cases = [
        // Through `use` groups and `super`.
        files(&[("", "pub mod a; pub mod b;"), ("a", "use super::{b::B};"), ("b", "use crate::a::A;")]),
        // Through a path in code, from a file in a subfolder, and a child module declared.
        files(&[
            ("", "mod a; mod b;"),
            ("a", "fn f() { crate::b::c::g(); }"),
            ("b", "mod c;"),
            ("b::c", "fn g() { crate::a::f(); }"),
        ]),
        // Through a macro's arguments, three files around.
        files(&[
            ("", "mod p; mod q; mod r;"),
            ("p", "fn f() { routes!(crate::q::h); }"),
            ("q", "use crate::r;"),
            ("r", "fn k() { tracing::info!(x = %crate::p::V); }"),
        ]),
    ];
    for case in &cases {
        assert_eq!(cycles(&sibling_graph(&module_graph(case))).len(), 1, "{:?}", case.keys());
    }
    // Tests are left out, and a folder's mod.rs and its files may name each other.
    let acyclic = files(&[
        ("", "pub mod a; pub mod b; use b::B;"),
        ("a", "pub struct A; #[cfg(test)] mod tests { use crate::b::B; }"),
        ("b", "pub mod c; pub use c::C; pub struct B;"),
        ("b::c", "use super::B; use crate::a::A; pub struct C;"),
    ]);
    assert!(cycles(&sibling_graph(&module_graph(&acyclic))).is_empty());
}
