//! Reading this process's memory as a RAM dump would (through `/proc/self/mem`: a file, so
//! no `unsafe`), for the token-hygiene tests.

#![allow(dead_code)] // each test crate uses a part

use std::fs::File;
use std::io::{Read as _, Seek, SeekFrom};

/// A span of this process's memory.
#[derive(Clone, Copy, Debug)]
pub struct Region {
    pub name: &'static str,
    pub addr: usize,
    pub len: usize,
}

impl Region {
    pub fn of<V: ?Sized>(name: &'static str, value: &V) -> Region {
        Region {
            name,
            addr: value as *const V as *const u8 as usize,
            len: std::mem::size_of_val(value),
        }
    }
}

/// A dump of regions prepared ahead (file open, memory allocated), so that taking it
/// allocates nothing: it can read memory just freed before the allocator reuses it.
pub struct Dump {
    mem: File,
    regions: Vec<Region>,
    pub bytes: Vec<Vec<u8>>,
}

impl Dump {
    pub fn prepare(regions: &[Region]) -> Dump {
        Dump {
            mem: File::open("/proc/self/mem").expect("/proc/self/mem (Linux)"),
            regions: regions.to_vec(),
            bytes: regions.iter().map(|r| vec![0; r.len]).collect(),
        }
    }

    pub fn take(&mut self) {
        for (region, bytes) in self.regions.iter().zip(&mut self.bytes) {
            self.mem.seek(SeekFrom::Start(region.addr as u64)).expect("seek");
            self.mem.read_exact(bytes).expect("read own memory");
        }
    }

    /// Every place where one of `secrets` is, as in [`find`].
    pub fn find(&self, secrets: &[&str]) -> Vec<String> {
        let mut found = Vec::new();
        for (region, bytes) in self.regions.iter().zip(&self.bytes) {
            for secret in secrets {
                let s = secret.as_bytes();
                for (at, w) in bytes.windows(s.len()).enumerate() {
                    if w == s {
                        found.push(format!("{secret} in {}+{at}", region.name));
                    }
                }
            }
        }
        found
    }
}

/// Every place in `regions` where one of `secrets` is, as `"<secret> in <region>+<offset>"`.
pub fn find(regions: &[Region], secrets: &[&str]) -> Vec<String> {
    let mut dump = Dump::prepare(regions);
    dump.take();
    dump.find(secrets)
}

/// Every place where a token minted by the reference backend is (`at_` or `rt_` and 32
/// lowercase hex digits), as `"<token> in <region>+<offset>"`.
pub fn find_minted(regions: &[Region]) -> Vec<String> {
    let mut dump = Dump::prepare(regions);
    dump.take();
    dump.find_minted()
}

impl Dump {
    /// [`find_minted`] on this dump.
    pub fn find_minted(&self) -> Vec<String> {
        let mut found = Vec::new();
        for (region, bytes) in self.regions.iter().zip(&self.bytes) {
            for (at, t) in bytes.windows(35).enumerate() {
                if (t.starts_with(b"at_") || t.starts_with(b"rt_"))
                    && t[3..].iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
                {
                    found.push(format!("{} in {}+{at}", String::from_utf8_lossy(t), region.name));
                }
            }
        }
        found
    }
}

/// Fails with `what` and every place found when `found` (from [`find`], [`Dump::find`] or
/// [`find_minted`]) is not empty.
#[track_caller]
pub fn assert_clean(found: &[String], what: &str) {
    assert!(found.is_empty(), "{what}: {found:?}");
}
