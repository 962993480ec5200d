//! Python venvs under the target directory, with one pinned package from PyPI each.

use std::path::PathBuf;
use std::process::Command;

use crate::{run, target_dir};

pub(crate) const EVENTLET_VERSION: &str = "0.41.3";

/// A venv under `target/xtask/<name>` with `package==version` from PyPI, made once; returns
/// its python. The installed version is read from the package metadata.
pub(crate) fn ensure_venv(name: &str, package: &str, version: &str) -> Result<PathBuf, String> {
    let venv = target_dir().join("xtask").join(name);
    let py = venv.join("bin/python");
    if !py.exists() {
        run(
            "create venv",
            Command::new("python3").args(["-m", "venv"]).arg(&venv),
        )?;
    }
    let have = Command::new(&py)
        .args([
            "-c",
            &format!("import importlib.metadata as m,sys;sys.stdout.write(m.version('{package}'))"),
        ])
        .stderr(std::process::Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
        .unwrap_or_default();
    if have != version {
        run(
            &format!("install {package} from PyPI"),
            Command::new(&py).args([
                "-m",
                "pip",
                "install",
                "--quiet",
                &format!("{package}=={version}"),
            ]),
        )?;
    }
    Ok(py)
}

pub(crate) fn ensure_eventlet_venv() -> Result<PathBuf, String> {
    ensure_venv("venv-eventlet", "eventlet", EVENTLET_VERSION)
}
