//! A power-loss simulator for raftlock's storage tests.
//!
//! A process run with the shim (this crate built as a shared object with
//! the `shim` feature, in `LD_PRELOAD`) and [`ROOT_ENV`] / [`IMAGE_ENV`]
//! set works as usual, while the shim keeps an [`Image`] of what a power
//! cut would leave of the root directory: only what `fsync`/`fdatasync`
//! made durable, file data and directory entries alike (see [`image`]).
//! To cut the power, SIGKILL the process and call [`Image::restore`]: the
//! root then holds exactly the durable state, as after a reboot.

pub mod image;
#[cfg(feature = "shim")]
mod interpose;

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

pub use image::Image;

/// The directory whose durability the shim models (it must exist).
pub const ROOT_ENV: &str = "RAFTLOCK_POWERLOSS_ROOT";
/// Where the shim keeps the durable image (created if missing; an existing
/// image is taken over, so wipe it after a restore).
pub const IMAGE_ENV: &str = "RAFTLOCK_POWERLOSS_IMAGE";

/// Builds the shim (`cargo build -p raftlock-powerloss --features shim`,
/// into its own target directory so it works while an outer cargo holds
/// the usual one) and returns the path of the shared object.
pub fn build_shim(target_dir: &Path) -> io::Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--quiet", "--release", "-p", "raftlock-powerloss"])
        .args(["--features", "shim", "--lib", "--target-dir"])
        .arg(target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()?;
    if !status.success() {
        return Err(io::Error::other(format!("building the shim: {status}")));
    }
    Ok(target_dir.join("release/libraftlock_powerloss.so"))
}
