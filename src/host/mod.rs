//! One host's files: the directory layout and its lock, the install receipt and its policy,
//! staging (download and verify a release into temp files, nothing visible changes) and the
//! journaled switch that makes a staged release current. Each layer only uses the ones above
//! it in this list.

pub mod layout;
pub mod lock;
pub mod policy;
pub mod receipt;
pub mod staging;
pub mod switch;
