//! The one order every writer follows: take the config-dir lock, finish or undo an interrupted
//! switch, then read the receipt.

use crate::error::Result;
use crate::host::layout::{ConfigLock, CreatedDirs, HostLayout};
use crate::host::receipt::InstallSource;
use crate::host::switch;

/// The host as a run sees it once it holds the lock: an interrupted earlier switch finished or
/// undone, then the receipt read. Every decision of install, download, update, rollback and
/// `source set` is made from this, never from a receipt read before the lock was taken (a
/// concurrent run could have changed it meanwhile).
pub struct Locked {
    /// The lock (released on drop) and the directories created for it.
    pub held: Held,
    /// What recovery did.
    pub recovered: switch::Recovery,
    /// The receipt, if the host has one.
    pub receipt: Option<InstallSource>,
}

/// Locks the config dir, recovers, and loads the receipt: the one order every writer follows.
pub fn lock_and_load(layout: &HostLayout) -> Result<Locked> {
    let held = lock(layout)?;
    let recovered = switch::recover(layout)?;
    let receipt = InstallSource::load(&layout.config_dir)?;
    Ok(Locked {
        held,
        recovered,
        receipt,
    })
}

/// The config-dir lock and the directories created to hold it. Field order matters: the lock
/// (and its file) goes first on drop, so an uncommitted, now empty config dir can be removed.
pub struct Held {
    _lock: ConfigLock,
    /// Directories created for the lock; committed when the run succeeds.
    pub dirs: CreatedDirs,
}

/// Takes the config-dir lock, creating the config dir if needed (kept only if the run commits).
pub fn lock(layout: &HostLayout) -> Result<Held> {
    let mut dirs = CreatedDirs::default();
    dirs.ensure(&layout.config_dir)?;
    let l = ConfigLock::acquire(&layout.config_dir)?;
    Ok(Held { _lock: l, dirs })
}
