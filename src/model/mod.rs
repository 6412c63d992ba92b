//! The floor with no I/O policy of its own: the formats and rules every other part reads.
//! Versions and their order, the checksums file, minisign signatures, the release's asset
//! table, images.json layer entries, gzip, and the one version policy (anti-rollback,
//! channel schemes).

pub mod checksums;
pub mod gz;
pub mod images;
pub mod layers;
pub mod pointer;
pub mod release;
pub mod signature;
pub mod version;
