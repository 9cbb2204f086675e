//! Replays the checked-in fuzz seeds (`fuzz/seeds/TARGET/*`, which include
//! the inputs of every crash fuzzing found) through the fuzz targets' checks
//! on the stable toolchain, so `make test` covers them without cargo-fuzz.

use std::fs;
use std::path::Path;

#[test]
fn every_seed_passes_its_target() {
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds");
    for (name, check) in file_restore_fuzz_checks::TARGETS {
        let dir = seeds.join(name);
        let mut inputs: Vec<_> = fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("seed directory {}: {e}", dir.display()))
            .map(|e| e.expect("seed entry").path())
            .collect();
        inputs.sort();
        assert!(
            !inputs.is_empty(),
            "no seeds for target {name} in {}",
            dir.display()
        );
        for input in &inputs {
            let data = fs::read(input).unwrap_or_else(|e| panic!("{}: {e}", input.display()));
            eprintln!("{name}: {}", input.display());
            check(&data);
        }
        eprintln!("{name}: {} seeds passed", inputs.len());
    }
}
