//! Integration tests of station-core: the runner contract and the data model's wire shape.

mod changes;
mod model;
mod policy_gaps;
mod remote_changes;
mod runner;
