//! The checks on this program's own executable before it is run inside a helper container: it must be a
//! statically linked Linux executable (the helper image holds nothing else) for the engine's architecture.

use object::elf;
use object::read::elf::{FileHeader, ProgramHeader};

/// The Docker (Go) name of the architecture this program was built for, as the engine reports its own.
pub fn own_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "riscv64" => "riscv64",
        "s390x" => "s390x",
        "loongarch64" => "loong64",
        other => other,
    }
}

/// Why an executable cannot serve as a helper, or `None` when it can: it must be an ELF file of the
/// engine's architecture without a program interpreter (a static executable, static-pie included).
pub fn unfit_reason(executable: &[u8], engine_os: &str, engine_arch: &str) -> Option<String> {
    if std::env::consts::OS != "linux" {
        return Some(format!(
            "this docker-persist is built for {}, and helpers run Linux executables",
            std::env::consts::OS
        ));
    }
    if engine_os != "linux" {
        return Some(format!(
            "the engine runs {engine_os} containers, not Linux ones"
        ));
    }
    if engine_arch != own_arch() {
        return Some(format!(
            "the engine's architecture is {engine_arch} and this docker-persist is built for {}",
            own_arch()
        ));
    }
    match has_interpreter(executable) {
        Ok(false) => None,
        Ok(true) => Some(
            "this docker-persist is dynamically linked (a static build: `RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --target <triple>`, as install.sh does)"
                .to_string(),
        ),
        Err(e) => Some(format!("this docker-persist's executable cannot be read as ELF: {e}")),
    }
}

/// Whether an ELF executable names a program interpreter (`PT_INTERP`), i.e. needs a dynamic loader.
fn has_interpreter(data: &[u8]) -> Result<bool, String> {
    let kind = object::FileKind::parse(data).map_err(|e| e.to_string())?;
    match kind {
        object::FileKind::Elf64 => {
            interp::<elf::FileHeader64<object::Endianness>>(data).map_err(|e| e.to_string())
        }
        object::FileKind::Elf32 => {
            interp::<elf::FileHeader32<object::Endianness>>(data).map_err(|e| e.to_string())
        }
        other => Err(format!("it is a {other:?} file, not ELF")),
    }
}

fn interp<H: FileHeader<Endian = object::Endianness>>(
    data: &[u8],
) -> Result<bool, object::read::Error> {
    let header = H::parse(data)?;
    let endian = header.endian()?;
    Ok(header
        .program_headers(endian, data)?
        .iter()
        .any(|ph| ph.p_type(endian) == elf::PT_INTERP))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dynamic_executable_is_unfit_and_says_how_to_build_a_static_one() {
        // The test binary itself is linked dynamically (tests are not built with crt-static).
        let own = std::fs::read("/proc/self/exe").unwrap();
        assert!(has_interpreter(&own).unwrap());
        let reason = unfit_reason(&own, "linux", own_arch()).unwrap();
        assert!(reason.contains("dynamically linked"), "{reason}");
        assert!(reason.contains("crt-static"), "{reason}");
    }

    #[test]
    fn a_static_executable_is_fit() {
        // busybox-static: installed by scripts/test.sh and .ci/run for the test images.
        let data = std::fs::read("/bin/busybox").expect("busybox-static is installed");
        assert!(!has_interpreter(&data).unwrap());
        assert_eq!(unfit_reason(&data, "linux", own_arch()), None);
    }

    #[test]
    fn another_architecture_or_os_is_unfit() {
        let data = std::fs::read("/bin/busybox").unwrap();
        let other = if own_arch() == "arm64" {
            "amd64"
        } else {
            "arm64"
        };
        assert!(
            unfit_reason(&data, "linux", other)
                .unwrap()
                .contains("architecture")
        );
        assert!(
            unfit_reason(&data, "windows", own_arch())
                .unwrap()
                .contains("windows")
        );
    }

    #[test]
    fn garbage_is_not_an_executable() {
        let reason = unfit_reason(b"#!/bin/sh\necho hi\n", "linux", own_arch()).unwrap();
        assert!(reason.contains("cannot be read as ELF"), "{reason}");
    }
}
