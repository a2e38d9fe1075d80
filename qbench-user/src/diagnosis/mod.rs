//! Why a thread did not quiesce: the pure rules ([`diagnose`]) over the facts gathered from
//! /proc and the target's memory ([`evidence`]), the target's user stacks ([`stack`]) and
//! memory reads ([`memory`]), and which threads wait on I/O that is ready ([`readiness`]).

pub mod diagnose;
pub mod evidence;
pub mod memory;
pub mod readiness;
pub mod stack;
