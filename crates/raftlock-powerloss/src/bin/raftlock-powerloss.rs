//! `raftlock-powerloss restore ROOT IMAGE`: after the process that ran
//! under the shim was killed, puts ROOT back to its durable image, as a
//! reboot after a power cut would. The image is removed afterwards so the
//! next run starts a fresh one.

use std::path::Path;
use std::process::ExitCode;

use raftlock_powerloss::Image;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [command, root, image] = args.as_slice() else {
        eprintln!("usage: raftlock-powerloss restore ROOT IMAGE");
        return ExitCode::from(2);
    };
    if command != "restore" {
        eprintln!("unknown command {command:?}; usage: raftlock-powerloss restore ROOT IMAGE");
        return ExitCode::from(2);
    }
    let result = Image::new(image)
        .restore(Path::new(root))
        .and_then(|()| std::fs::remove_dir_all(image));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("raftlock-powerloss: {e}");
            ExitCode::FAILURE
        }
    }
}
