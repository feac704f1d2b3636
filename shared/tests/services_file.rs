//! The services file read from disk: the shipped example and the error table.

use std::path::PathBuf;

use fiberlb_shared::services::{load_services, parse_services, to_yaml};

fn example_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/services.yaml")
}

#[test]
fn example_loads() {
    let set = load_services(&example_path()).unwrap_or_else(|e| panic!("{e}"));
    println!("{set:#?}");
    println!("{}", to_yaml(&set));
    assert_eq!(parse_services(&to_yaml(&set)), Ok(set));
}
