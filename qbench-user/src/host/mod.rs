//! What qbench-trace checks about the machine and the target before it observes: the
//! capabilities held and needed ([`capabilities`]), the checks made before loading anything
//! ([`preflight`]), `--check`'s verdict ([`check`]), and whether and how the target may be sent
//! the update signal ([`request`]).

pub mod capabilities;
pub mod check;
pub mod preflight;
pub mod request;
