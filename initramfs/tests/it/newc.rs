//! A minimal `newc` reader that walks concatenated archives the way the Linux unpacker
//! does (zero padding between archives is skipped; every header must be 4-byte aligned).

/// One entry read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub ino: u32,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: u32,
    pub rdev: (u32, u32),
    pub data: Vec<u8>,
}

fn hex(data: &[u8], at: usize) -> u32 {
    let text = std::str::from_utf8(&data[at..at + 8]).expect("hex field is ASCII");
    u32::from_str_radix(text, 16).expect("hex field")
}

fn align4(n: usize) -> usize {
    n.div_ceil(4) * 4
}

/// Parses all archives in `data`, leaving out the trailers.
pub fn parse(data: &[u8]) -> Vec<Entry> {
    let mut entries = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        if data[pos] == 0 {
            pos += 1;
            continue;
        }
        assert_eq!(pos % 4, 0, "header at unaligned offset {pos}");
        assert_eq!(&data[pos..pos + 6], b"070701", "bad magic at {pos}");
        let field = |i: usize| hex(data, pos + 6 + i * 8);
        let (ino, mode, uid, gid, mtime, size) =
            (field(0), field(1), field(2), field(3), field(5), field(6));
        let rdev = (field(9), field(10));
        let name_size = field(11) as usize;
        let name_start = pos + 110;
        let name = std::str::from_utf8(&data[name_start..name_start + name_size - 1])
            .expect("UTF-8 name")
            .to_string();
        assert_eq!(
            data[name_start + name_size - 1],
            0,
            "name not NUL-terminated"
        );
        let data_start = align4(name_start + name_size);
        let file = data[data_start..data_start + size as usize].to_vec();
        pos = align4(data_start + size as usize);
        if name != "TRAILER!!!" {
            entries.push(Entry {
                name,
                ino,
                mode,
                uid,
                gid,
                mtime,
                rdev,
                data: file,
            });
        }
    }
    entries
}
