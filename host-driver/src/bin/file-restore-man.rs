//! `file-restore-man DIR`: writes the man pages of `file-restore`
//! (`file-restore.1`, `file-restore-list.1`, …) into DIR, generated from
//! the same clap definition the CLI parses with. `make build` runs it into
//! `build/man`; it is not installed.

use file_restore::cli::man;

fn main() {
    let mut args = std::env::args_os().skip(1);
    let (Some(dir), None) = (args.next(), args.next()) else {
        eprintln!("usage: file-restore-man DIR");
        std::process::exit(2);
    };
    match man::man_pages(std::path::Path::new(&dir)) {
        Ok(files) => {
            for f in files {
                println!("{}", f.display());
            }
        }
        Err(e) => {
            eprintln!("file-restore-man: error: {e:#}");
            std::process::exit(1);
        }
    }
}
