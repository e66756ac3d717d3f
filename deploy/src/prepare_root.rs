//! `update prepare-root` (and `update-prepare-root`, the same for an initramfs): run from an
//! initramfs with the physical root mounted at SYSROOT (`/sysroot` under dracut, `/root`
//! under initramfs-tools: any path works), it turns the deployment named by
//! `update.deployment=` on the kernel command line into what SYSROOT shows, so that the
//! initramfs can `exec switch_root SYSROOT /sbin/init`:
//!
//! 0. every mount is made private, recursively: a mount whose parent mount is shared
//!    cannot be moved (EINVAL), and a systemd initrd (dracut) makes `/` shared;
//! 1. the deployment directory is bind-mounted onto itself (so it can be moved) and moved
//!    to a temporary mount point;
//! 2. the physical root is moved under it, to its `/sysroot`;
//! 3. the whole is moved back to SYSROOT;
//! 4. the OS's shared `var` is bind-mounted onto `/var`;
//! 5. `/usr` is bind-mounted onto itself and made read-only, so nobody edits the store's
//!    hardlinked files in place.
//!
//! The same steps as `ostree-prepare-root`, in the same order.

use std::path::{Path, PathBuf};

use rustix::mount::{
    mount_bind, mount_change, mount_move, mount_remount, MountFlags, MountPropagationFlags,
};

use crate::deployment::DeploymentRef;
use crate::error::{Error, IoResultExt, Result};
use crate::sysroot::UPDATE_DIR;

/// Where the deployment is parked while the physical root moves under it.
const PARK: &str = "/run/update-prepare-root";

/// The paths prepare-root works on, worked out without mounting anything (so they can be
/// checked, and printed with `--dry-run`).
#[derive(Clone, Debug)]
pub struct Plan {
    /// The deployment to boot.
    pub deployment: DeploymentRef,
    /// Its directory under the physical root.
    pub deploy_path: PathBuf,
    /// The OS's shared `/var`.
    pub var_path: PathBuf,
}

/// Work out what to mount from the command line in `proc_cmdline`, for a physical root at
/// `sysroot`. Errors name what is missing.
pub fn plan(sysroot: &Path, proc_cmdline: &Path) -> Result<Plan> {
    let d = crate::cmdline::booted(proc_cmdline)?.ok_or_else(|| Error::NothingToBoot {
        cmdline: proc_cmdline.to_path_buf(),
    })?;
    let os_dir = sysroot.join(UPDATE_DIR).join("deploy").join(&d.os);
    let deploy_path = os_dir.join("deploy").join(d.id.to_string());
    let var_path = os_dir.join("var");
    for (what, p) in [("deployment", &deploy_path), ("shared /var", &var_path)] {
        #[allow(clippy::disallowed_methods)] // path meant: the initramfs mounts these paths
        match std::fs::symlink_metadata(p) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(Error::DeploymentDir {
                    deployment: d.to_string(),
                    what: what.to_owned(),
                    path: p.clone(),
                    problem: "is not a directory",
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::DeploymentDir {
                    deployment: d.to_string(),
                    what: what.to_owned(),
                    path: p.clone(),
                    problem: "does not exist",
                })
            }
            Err(e) => return Err(e).at_path(p),
        }
    }
    for sub in ["usr", "var", "sysroot"] {
        let p = deploy_path.join(sub);
        #[allow(clippy::disallowed_methods)] // path meant: the initramfs mounts these paths
        if !std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir()) {
            return Err(Error::DeploymentDir {
                deployment: d.to_string(),
                what: format!("/{sub}"),
                path: p,
                problem: "is missing or not a directory",
            });
        }
    }
    Ok(Plan {
        deployment: d,
        deploy_path,
        var_path,
    })
}

/// Carry out `plan` with the physical root mounted at `sysroot`. Needs to run as root in
/// the initramfs; on error the mounts made so far stay (the initramfs then fails the boot,
/// which the boot counter records).
pub fn run(sysroot: &Path, plan: &Plan) -> Result<()> {
    let park = Path::new(PARK);
    // As ostree-prepare-root does: nothing of what follows may propagate to (or be refused
    // because of) a peer mount. The real root's init (systemd) makes `/` shared again.
    let root = Path::new("/");
    mount_change(
        root,
        MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
    )
    .at_path(root)?;
    #[allow(clippy::disallowed_methods)] // path meant: the initramfs's fixed park directory
    std::fs::create_dir_all(park).at_path(park)?;
    mount_bind(&plan.deploy_path, &plan.deploy_path).at_path(&plan.deploy_path)?;
    mount_move(&plan.deploy_path, park).at_path(park)?;
    mount_move(sysroot, park.join("sysroot")).at_path(park.join("sysroot"))?;
    mount_move(park, sysroot).at_path(sysroot)?;
    // The physical root is now at SYSROOT/sysroot, so the var path moved with it.
    let rel_var = plan
        .var_path
        .strip_prefix(sysroot)
        .map_err(|_| Error::OutsideSysroot {
            path: plan.var_path.clone(),
            sysroot: sysroot.to_path_buf(),
        })?;
    let var_now = sysroot.join("sysroot").join(rel_var);
    mount_bind(&var_now, sysroot.join("var")).at_path(sysroot.join("var"))?;
    let usr = sysroot.join("usr");
    mount_bind(&usr, &usr).at_path(&usr)?;
    mount_remount(&usr, MountFlags::BIND | MountFlags::RDONLY, "").at_path(&usr)?;
    Ok(())
}
