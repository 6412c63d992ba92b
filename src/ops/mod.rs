//! The operations front-ends call: install and download, update and rollback (with the
//! receipt's source routing), and packaging a release folder.

pub mod channels;
pub mod install;
pub mod package;
pub mod promote;
pub mod request;
pub mod source;
pub mod update;
pub mod verify;
