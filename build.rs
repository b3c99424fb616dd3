//! Embeds the repository's `pipelines/*.toml` and `schemas/*.json` in the binary, so that
//! the built-in datasets work without any file beside the executable.

use std::fmt::Write as _;
use std::path::Path;

fn embed(dir: &str, ext: &str, out: &mut String, name: &str) {
    println!("cargo:rerun-if-changed={dir}");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {dir}: {e}"))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some(ext))
        .collect();
    files.sort();
    writeln!(out, "/// Embedded `{dir}/*.{ext}` files: (file name, contents).").unwrap();
    writeln!(out, "pub const {name}: &[(&str, &str)] = &[").unwrap();
    for path in files {
        let abs = std::fs::canonicalize(&path).unwrap();
        println!("cargo:rerun-if-changed={}", abs.display());
        let file = path.file_name().unwrap().to_str().unwrap();
        writeln!(out, "    ({file:?}, include_str!({:?})),", abs.display().to_string()).unwrap();
    }
    writeln!(out, "];").unwrap();
}

fn main() {
    let mut out = String::new();
    embed("pipelines", "toml", &mut out, "PIPELINES");
    embed("schemas", "json", &mut out, "SCHEMAS");
    let dest = Path::new(&std::env::var("OUT_DIR").unwrap()).join("builtin_catalog.rs");
    std::fs::write(dest, out).unwrap();
}
